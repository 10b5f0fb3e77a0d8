"""The pipeline end to end: build_graph on every scheduler, fetch over real HTTP, states, failures."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import dask
import pytest
from dask.utils import key_split
from distributed import Client, LocalCluster, get_task_stream
from PIL import Image

from daskgif import build_graph
from daskgif.errors import RunFailed
from daskgif.pipeline.sample import sample_path
from daskgif.gif.split import split_bytes
from frames import decode_rgb, image_data, make_gif, make_png

SAMPLE = Path(sample_path()).read_bytes()


@pytest.fixture(scope="module")
def client():
    """A real two-worker cluster of processes, one thread each."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            yield client


def paths(tmp_path: Path, **kwargs) -> dict:
    return {"data_file": str(tmp_path / "image-data.img"), "out": str(tmp_path / "clip.gif"),
            "frames_dir": str(tmp_path / "frames"), "retry_delay": 0.05, **kwargs}


def check_output(result, data: bytes, duration: int = 100, loop: int = 0) -> None:
    """The frames are the input's frames byte for byte; the GIF shows them pixel for pixel."""
    spans = split_bytes(data)
    assert result.ok
    assert [Path(p).read_bytes() for p in result.frames] == [data[s.offset:s.offset + s.length] for s in spans]
    gif = Path(result.path).read_bytes()
    assert decode_rgb(gif) == [decode_rgb(Path(p).read_bytes())[0] for p in result.frames]
    with Image.open(io.BytesIO(gif)) as image:
        assert image.n_frames == len(spans)
        assert image.info["duration"] == duration
        assert image.info.get("loop", 1) == loop


@pytest.mark.parametrize("out", ["clip.avi", "clip", "gifs.d/clip"])
def test_an_output_without_a_writer_is_refused_at_build(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=rf"^out '{out}' has no supported suffix: give one of .gif, .webp, .png, .mp4$"):
        build_graph(out=out)
    assert list(tmp_path.iterdir()) == []


def test_building_reads_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    graph = build_graph(url="http://127.0.0.1:9/never-fetched.img")
    assert list(tmp_path.iterdir()) == []
    assert sorted({key_split(k) for k in graph.dask}) == ["combine", "fetch", "map-frames", "split"]


def test_sample_on_sync_scheduler(tmp_path):
    result = build_graph(**paths(tmp_path), duration=70, loop=3).compute(scheduler="sync")
    check_output(result, SAMPLE, duration=70, loop=3)
    assert [Path(p).name for p in result.frames][:2] == ["frame_00.gif", "frame_01.gif"]
    assert result.states["fetch"].state == "Success"
    frames = result.states["write-frame"]
    assert frames.counts == {"Success": len(result.frames)} and len(frames) == 0  # plain successes are counted
    assert result.size == Path(result.path).stat().st_size


def test_second_run_skips_fetch_and_writes_the_same_bytes(tmp_path):
    first = build_graph(**paths(tmp_path)).compute(scheduler="threads")
    before = {p: Path(p).read_bytes() for p in (first.path, *first.frames)}
    second = build_graph(**paths(tmp_path)).compute(scheduler="threads")
    assert second.states["fetch"].state == "Skipped"
    assert second.states["split"].state == "Success"  # downstream of a skip still runs
    assert {p: Path(p).read_bytes() for p in (second.path, *second.frames)} == before
    third = build_graph(**paths(tmp_path), force=True).compute(scheduler="sync")
    assert third.states["fetch"].state == "Success"


def test_fetch_over_http(tmp_path, http_server):
    data = image_data([make_gif(40, 30, seed=i) for i in range(5)])
    http_server.serve("/all-images.img", data)
    result = build_graph(http_server.url("/all-images.img"), **paths(tmp_path)).compute(scheduler="sync")
    check_output(result, data)
    assert Path(tmp_path / "image-data.img").read_bytes() == data


def test_transient_http_errors_are_retried(tmp_path, http_server):
    data = image_data([make_gif(20, 20, seed=i) for i in range(3)])
    http_server.serve("/flaky.img", data)
    http_server.fail("/flaky.img", 503, times=2)
    result = build_graph(http_server.url("/flaky.img"), **paths(tmp_path)).compute(scheduler="sync")
    assert result.ok
    assert result.states["fetch"].attempts == 3


def test_missing_url_fails_at_once_and_leaves_nothing(tmp_path, http_server):
    url = http_server.url("/missing.img")
    with pytest.raises(RunFailed) as info:
        build_graph(url, **paths(tmp_path)).compute(scheduler="sync")
    message = str(info.value)
    assert "'fetch'" in message and url in message and "404" in message and "1 attempt" in message
    result = info.value.result
    assert not result.ok and result.states["fetch"].attempts == 1
    assert list(result.states) == ["fetch"]  # nothing downstream ran
    assert os.listdir(tmp_path) == []


def test_bad_frame_names_its_index_and_keeps_the_old_output(tmp_path):
    good = [make_gif(16, 16, seed=i) for i in range(4)]
    data_file = tmp_path / "image-data.img"
    data_file.write_bytes(image_data([*good[:2], b"GIF89a" + b"\x10\x00\x10\x00" + b"\xff" * 3, *good[2:]]))
    (tmp_path / "clip.gif").write_bytes(b"previous run")
    with pytest.raises(RunFailed, match="frame 2"):
        build_graph(**paths(tmp_path, url=str(data_file))).compute(scheduler="sync")
    assert (tmp_path / "clip.gif").read_bytes() == b"previous run"
    assert sorted(set(os.listdir(tmp_path)) - {"frames"}) == ["clip.gif", "image-data.img"]  # no .part, no lock
    assert not (tmp_path / "frames").exists()  # split failed: no frame was written


def test_png_frames_are_converted(tmp_path):
    frames = [make_gif(24, 24, seed=1), make_png(24, 24, seed=2), make_gif(24, 24, seed=3)]
    (tmp_path / "image-data.img").write_bytes(image_data(frames))
    result = build_graph(**paths(tmp_path, url=str(tmp_path / "image-data.img"))).compute(scheduler="threads")
    assert result.ok and len(result.frames) == 3
    with Image.open(io.BytesIO(frames[1])) as png:
        expected = png.convert("RGB").tobytes()
    assert decode_rgb(Path(result.path).read_bytes())[1] == expected


@pytest.mark.parametrize("scheduler", ["sync", "threads", "processes"])
def test_local_schedulers(tmp_path, scheduler):
    check_output(build_graph(**paths(tmp_path), frames_per_task=5).compute(scheduler=scheduler), SAMPLE)


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_batch_keys_name_their_items(scheduler):
    from dask.callbacks import Callback

    from daskgif.core.fanout import fan_out

    keys: list[str] = []
    with dask.config.set(scheduler=scheduler), Callback(pretask=lambda key, dsk, state: keys.append(key)):
        assert fan_out(lambda first, batch: sum(batch), range(10), name="write-frame", batch_size=4,
                       token="0f" * 16) == [6, 22, 17]
    assert sorted(keys, key=lambda k: int(k.split("-")[2])) == [
        f"write-frame-{first}-{last}-{'0f' * 16}" for first, last in [(0, 3), (4, 7), (8, 9)]]
    assert {key_split(k) for k in keys} == {"write-frame"}  # one readable prefix in the dashboard


def test_distributed_spreads_write_frame_tasks(tmp_path, client):
    with get_task_stream(client) as stream:
        result = build_graph(**paths(tmp_path), frames_per_task=1).compute()
    check_output(result, SAMPLE)
    writes = [t for t in stream.data if key_split(t["key"]) == "write-frame"]
    assert len(writes) == len(result.frames)
    # Each batch's key names the frames it holds (here one each): write-frame-<first>-<last>-<run>.
    assert sorted(str(t["key"]).rsplit("-", 1)[0] for t in writes) == sorted(
        f"write-frame-{i}-{i}" for i in range(len(result.frames)))
    assert len({t["worker"] for t in writes}) == 2
    assert {key_split(t["key"]) for t in stream.data} >= {"fetch", "split", "map-frames", "combine"}


def test_graph_stays_small_whatever_the_data(tmp_path):
    small = build_graph(**paths(tmp_path))
    (tmp_path / "big.img").write_bytes(image_data([make_gif(64, 64, seed=i) for i in range(2000)]))
    big = build_graph(**paths(tmp_path, url=str(tmp_path / "big.img"), data_file=str(tmp_path / "big.img")))
    sizes = [len(pickle.dumps(dict(g.__dask_graph__()))) for g in (small, big)]
    assert max(sizes) < 20_000 and abs(sizes[0] - sizes[1]) < 200
    assert len(big.compute(scheduler="threads").frames) == 2000


@pytest.mark.parametrize(
    "kwargs, match",
    [({"delimiter": b""}, "delimiter"), ({"duration": -1}, "duration"), ({"loop": 1.5}, "loop"),
     ({"retries": -1}, "retries"), ({"on_error": "ignore"}, "on_error"), ({"frames_per_task": 0}, "frames_per_task")],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_graph(**kwargs)


def test_mapped_states_to_dict_keeps_at_most_100_records():
    from daskgif.core.state import FAILED, MappedStates, State

    states = MappedStates("write-frame")
    for i in range(250):
        states.add(State("write-frame", FAILED, 1, 0.0, 0.1, "OSError: x", index=i))
    found = states.to_dict()
    assert len(found["records"]) == 100 and found["records_left_out"] == 150 and found["counts"] == {FAILED: 250}
    assert list(found["records"])[:2] == ["0", "1"]


def archive(value, p):
    """A step after combine: copies the clip next to it."""
    from daskgif import storage

    with storage.open_input(p.out) as f, storage.atomic_write(p.out + ".archived") as g:
        g.write(f.read())
    return p.out + ".archived"  # a value of its own: the result is still made from combine's


def test_a_step_added_after_combine_keeps_the_result(tmp_path, monkeypatch):
    from daskgif.pipeline import steps

    monkeypatch.setattr(steps, "STEPS", (*steps.STEPS, steps.Step("archive", archive, "copies the clip")))
    result = build_graph(data_file=str(tmp_path / "d.img"), out=str(tmp_path / "c.gif")).compute(scheduler="sync")
    assert result.ok and result.path == str(tmp_path / "c.gif") and len(result.frames) == 32
    assert list(result.states)[-1] == "archive" and result.states["archive"].state == "Success"
    assert (tmp_path / "c.gif.archived").read_bytes() == (tmp_path / "c.gif").read_bytes()
    assert not list(tmp_path.rglob("*.lock"))  # the run ended: its leases with it


def test_per_step_settings_follow_the_steps():
    import yaml

    from daskgif.pipeline import limits, steps

    timed = tuple(step.maps or step.name for step in steps.STEPS)  # a step that maps only waits: its tasks are timed
    assert limits.TIMED_STEPS == timed  # daskgif.task-timeout names exactly the timed tasks
    defaults = yaml.safe_load(Path(steps.__file__).parent.parent.joinpath("daskgif.yaml").read_text())["daskgif"]
    timeouts = defaults["task-timeout"]
    assert timeouts is None or tuple(timeouts) == timed


def test_hooks_hear_a_run_computed_on_a_client_that_is_not_the_default(tmp_path):
    seen = []
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as other, Client(cluster, set_as_default=False):
        graph = build_graph(**paths(tmp_path), on_state=[seen.append])  # its hooks hear it while it lives
        result = other.compute(graph).result()
    assert result.ok
    steps = [(s.name, s.state) for s in seen if s.index is None]
    assert steps[-1] == ("combine", "Success") and steps.count(("combine", "Success")) == 1  # two clients, once
    assert {s.name for s in seen} >= {"fetch", "split", "map-frames", "combine"}
