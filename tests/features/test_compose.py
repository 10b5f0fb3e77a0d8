"""A pipeline is a plain Dask collection: every way of computing it gives the same run.

``g.compute()``, ``dask.compute(g)``, ``dask.compute(g1, g2)``, ``client.compute(g)``,
``client.persist(g)`` and ``g.persist()`` must write the same files, return the same
``Result`` (or raise the same ``RunFailed``), take and end the same lease on the data
file, and send the same states to the ``on_state`` hooks, on ``sync``, ``threads`` and
a ``LocalCluster``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dask
import pytest

import daskgif  # noqa: F401  (before distributed, which snapshots dask.config)
from daskgif import build_graph
from daskgif.errors import LockHeld, RunFailed
from daskgif.gif.split import split_bytes
from daskgif.pipeline.sample import sample_path

import distributed

SAMPLE = Path(sample_path()).read_bytes()
FRAMES = len(split_bytes(SAMPLE))
STEPS = ["fetch", "split", "map-frames", "combine"]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


def pipeline(folder: Path, seen: list | None = None, **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    return build_graph(data_file=str(folder / "image-data.img"), out=str(folder / "clip.gif"), retry_delay=0,
                       on_state=() if seen is None else (seen.append,), **kwargs)


def by_compute(g):
    return g.compute()


def by_dask_compute(g):
    return dask.compute(g)[0]


def by_persist(g):
    return g.persist().compute()


def by_client_compute(g):
    return distributed.default_client().compute(g).result()


def by_client_persist(g):
    return distributed.default_client().persist(g).compute()


LOCAL_WAYS = [by_compute, by_dask_compute, by_persist]
CLUSTER_WAYS = [*LOCAL_WAYS, by_client_compute, by_client_persist]


def check_run(folder: Path, result, seen: list) -> None:
    assert result.ok and len(result.frames) == FRAMES
    assert (folder / "clip.gif").read_bytes()[:6] == b"GIF89a"
    assert len(list((folder / "frames").glob("frame_*.gif"))) == FRAMES
    assert not list(folder.glob("*.lock"))  # the lease (data file, frames, output) ended with the run
    assert [s.name for s in seen if s.state in ("Success", "Skipped")] == STEPS  # every hook call arrived


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
@pytest.mark.parametrize("way", LOCAL_WAYS, ids=lambda f: f.__name__)
def test_every_way_of_computing_locally_gives_the_same_run(tmp_path, scheduler, way):
    seen: list = []
    with dask.config.set(scheduler=scheduler):
        result = way(pipeline(tmp_path, seen))
    check_run(tmp_path, result, seen)


@pytest.mark.parametrize("way", CLUSTER_WAYS, ids=lambda f: f.__name__)
def test_every_way_of_computing_on_a_cluster_gives_the_same_run(tmp_path, cluster, way):
    seen: list = []
    with distributed.Client(cluster):
        result = way(pipeline(tmp_path, seen))
    check_run(tmp_path, result, seen)


@pytest.mark.parametrize("scheduler", ["sync", "threads", "cluster"])
def test_two_pipelines_in_one_compute(tmp_path, scheduler, cluster):
    client = distributed.Client(cluster) if scheduler == "cluster" else None
    try:
        with dask.config.set(scheduler=scheduler) if client is None else client.as_current():
            a, b = dask.compute(pipeline(tmp_path / "a"), pipeline(tmp_path / "b"))
    finally:
        if client is not None:
            client.close()
    assert a.ok and b.ok and a.path != b.path
    assert (tmp_path / "a" / "clip.gif").read_bytes() == (tmp_path / "b" / "clip.gif").read_bytes()


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_two_pipelines_on_one_data_file_never_wait_never_mix(tmp_path, scheduler):
    first = pipeline(tmp_path)
    second = build_graph(data_file=str(tmp_path / "image-data.img"), out=str(tmp_path / "other.gif"), retry_delay=0)
    with dask.config.set(scheduler=scheduler):
        try:
            a, b = dask.compute(first, second)
        except RunFailed as e:  # they overlapped: the second failed at once, naming the first
            assert isinstance(e.__cause__, LockHeld), e
            assert ".lock is held by run" in str(e)
            assert not (tmp_path / "other.gif").exists() or not (tmp_path / "clip.gif").exists()
        else:  # Dask ran one after the other: both succeed, with the same frames
            assert a.ok and b.ok and a.frames == b.frames
            assert (tmp_path / "clip.gif").read_bytes() == (tmp_path / "other.gif").read_bytes()
    assert not (tmp_path / "image-data.img.lock").exists() or scheduler == "threads"


def test_a_failed_run_ends_its_lease_and_is_the_same_whichever_way(tmp_path, cluster):
    (tmp_path / "frames" / "frame_02.gif").mkdir(parents=True)  # frame 2 cannot be written
    messages = []
    for way in (by_compute, by_dask_compute):
        with dask.config.set(scheduler="threads"), pytest.raises(RunFailed) as info:
            way(pipeline(tmp_path))
        messages.append(str(info.value).replace(str(tmp_path), "<tmp>"))
        assert not (tmp_path / "image-data.img.lock").exists()
    with distributed.Client(cluster):
        with pytest.raises(RunFailed) as info:
            by_client_compute(pipeline(tmp_path))
    messages.append(str(info.value).replace(str(tmp_path), "<tmp>"))
    assert not (tmp_path / "image-data.img.lock").exists()
    assert len(set(messages)) == 1 and "frame 2" in messages[0], messages
    assert not os.path.exists(tmp_path / "clip.gif")


def test_two_runs_sharing_an_output_never_mix_their_frames(tmp_path):
    from frames import image_data, make_gif

    (tmp_path / "a.img").write_bytes(image_data([make_gif(8, 8, seed=i) for i in range(12)]))
    (tmp_path / "b.img").write_bytes(image_data([make_gif(9, 9, seed=i) for i in range(5)]))
    graphs = [build_graph(url=str(tmp_path / f"{x}.img"), data_file=str(tmp_path / f"{x}.data"),
                          out=str(tmp_path / "clip.gif"), frames_dir=str(tmp_path / "frames")) for x in "ab"]
    with dask.config.set(scheduler="threads"):
        try:
            results = dask.compute(*graphs)
        except RunFailed as e:  # they overlapped: the second failed at once, naming the output or frames lock
            assert isinstance(e.__cause__, LockHeld) and ".lock is held by run" in str(e)
            results = None
    widths = [p.read_bytes()[6] for p in (tmp_path / "frames").glob("frame_*.gif")]
    assert set(widths) <= {8} or set(widths) == {9}, widths  # one run's frames, never both
    assert len(widths) <= {8: 12, 9: 5}[widths[0]] if widths else True
    if results is not None:  # Dask ran them one after the other
        assert all(r.ok for r in results)


@pytest.mark.parametrize("data_file", ["frames/frame_05.gif", "frames/frame_99.gif", "frames/.frames-manifest.json"])
def test_a_data_file_the_run_would_overwrite_is_refused_before_any_work(tmp_path, data_file):
    import subprocess
    import sys

    (tmp_path / "frames").mkdir()
    (tmp_path / data_file).write_bytes(b"precious")
    done = subprocess.run([sys.executable, "-m", "daskgif", "run", "--scheduler", "sync", "--data-file", data_file],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and "is in frames_dir 'frames' under a name the run writes" in done.stderr
    assert (tmp_path / data_file).read_bytes() == b"precious" and not (tmp_path / "clip.gif").exists()


# --- Many inputs: one pipeline per input, computed together ------------------------------------------

def inputs(folder: Path, count: int = 3) -> list[Path]:
    from frames import image_data, make_gif

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for n in range(count):
        path = folder / f"day-{n}.img"
        path.write_bytes(image_data([make_gif(8 + n, 8, seed=10 * n + i) for i in range(4 + n)]))
        made.append(path)
    return made


@pytest.mark.parametrize("scheduler", ["sync", "threads", "cluster"])
def test_a_glob_of_inputs_makes_one_clip_each_in_one_compute(tmp_path, cluster, scheduler, monkeypatch):
    from daskgif import build_graphs

    inputs(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    # Relative defaults (data/{name}.img, frames/{name}, {name}.gif) on a local scheduler; absolute on the
    # cluster, whose workers do not share this test's working folder.
    where = {} if scheduler != "cluster" else {
        "out": f"{tmp_path}/{{name}}.gif", "data_file": f"{tmp_path}/data/{{name}}{{suffix}}",
        "frames_dir": f"{tmp_path}/frames/{{name}}"}
    graphs = build_graphs(str(tmp_path / "in" / "*.img"), retry_delay=0, **where)
    client = distributed.Client(cluster) if scheduler == "cluster" else None
    try:
        with dask.config.set(scheduler=scheduler) if client is None else client.as_current():
            results = dask.compute(*graphs)
    finally:
        if client is not None:
            client.close()
    assert [Path(r.path).name for r in results] == ["day-0.gif", "day-1.gif", "day-2.gif"]
    assert [len(r.frames) for r in results] == [4, 5, 6]
    assert [len(list((tmp_path / "frames" / f"day-{n}").glob("frame_*.gif"))) for n in range(3)] == [4, 5, 6]
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if not p.name.endswith(".json")) == \
        ["day-0.img", "day-1.img", "day-2.img"]


def test_inputs_that_would_write_one_path_are_refused_before_anything_runs(tmp_path):
    from daskgif import build_graphs

    a, b = inputs(tmp_path / "a", 1)[0], inputs(tmp_path / "b", 1)[0]  # both named day-0
    with pytest.raises(ValueError, match=r"inputs '.*a/day-0.img' and '.*b/day-0.img' would both write out "
                                         r"'.*day-0.gif': both are named 'day-0': give the inputs distinct file names$"):
        build_graphs([str(a), str(b)], out=str(tmp_path / "{name}.gif"))
    with pytest.raises(ValueError, match=r"would both write out '.*one.gif': put \{name\} in out$"):  # renaming: no help
        build_graphs([str(a), str(b)], out=str(tmp_path / "one.gif"))
    with pytest.raises(ValueError, match=r"would both write out '.*clip.gif': put \{name\} in out$"):
        build_graphs([str(p) for p in inputs(tmp_path / "c", 2)], out=str(tmp_path / "clip.gif"))
    with pytest.raises(ValueError, match="urls matched no input"):
        build_graphs(str(tmp_path / "nothing" / "*.img"))
    assert not list(tmp_path.glob("*.gif"))


@pytest.mark.parametrize("template, words", [
    ("{nam}.gif", "has the placeholder {nam}: only {name} and {suffix} are filled in"),
    ("{name.__class__}.gif", "has the placeholder {name.__class__}"),  # no attribute of the name is looked up
    ("{}.gif", "has the placeholder {}"),
    ("{name.gif", "is not a template"),
])
def test_a_path_template_fills_only_name_and_suffix(tmp_path, template, words):
    from daskgif import build_graphs

    (a,) = inputs(tmp_path / "in", 1)
    with pytest.raises(ValueError, match=re.escape(words)):
        build_graphs([str(a)], out=str(tmp_path / template))
    with pytest.raises(ValueError, match=re.escape(words)):
        build_graph(url=str(a), out=str(tmp_path / template))
    assert build_graph(url=str(a), out=str(tmp_path / "{name}{{x}}.gif"),
                       frames_dir=str(tmp_path / "f-{name}")).params.out == str(tmp_path / "day-0{x}.gif")
    assert build_graph(url=str(a), frames_dir=str(tmp_path / "f-{name}")).params.frames_dir == str(tmp_path / "f-day-0")


def test_one_bad_input_fails_alone(tmp_path, cluster):
    from daskgif import build_graphs

    good = inputs(tmp_path / "in", 2)
    bad = tmp_path / "in" / "broken.img"
    bad.write_bytes(b"not an image at all\n\n\n\n")
    graphs = build_graphs([str(good[0]), str(bad), str(good[1])], out=str(tmp_path / "{name}.gif"),
                          data_file=str(tmp_path / "data" / "{name}.img"), frames_dir=str(tmp_path / "f" / "{name}"))
    with distributed.Client(cluster) as client:
        futures = client.compute(graphs)
        distributed.wait(futures)
        assert [f.status for f in futures] == ["finished", "error", "finished"]
        assert isinstance(futures[1].exception(), RunFailed) and "broken" not in str(futures[0].result().path)
    assert (tmp_path / "day-0.gif").exists() and (tmp_path / "day-1.gif").exists()
    assert not (tmp_path / "broken.gif").exists()


def test_a_batchs_hooks_and_events_carry_its_id_and_each_input(tmp_path):
    from daskgif import build_graphs
    from daskgif.core import events
    from daskgif.pipeline.graph import InputState
    from daskgif.views.runs import Runs

    good = inputs(tmp_path / "in", 2)
    seen, page = [], Runs()
    unsubscribe = events.bus.subscribe(page.add)
    try:
        graphs = build_graphs([str(p) for p in good], out=str(tmp_path / "{name}.gif"), retry_delay=0,
                              data_file=str(tmp_path / "data" / "{name}.img"), frames_dir=str(tmp_path / "f" / "{name}"),
                              on_state=[seen.append])
        dask.compute(*graphs, scheduler="sync")
        single = pipeline(tmp_path / "single", seen=[])
        single.compute(scheduler="sync")
    finally:
        unsubscribe()
    batch = graphs[0].params.batch
    assert batch and {g.params.batch for g in graphs} == {batch} and single.params.batch is None
    assert all(isinstance(s, InputState) and s.batch == batch for s in seen)
    assert {s.url for s in seen} == {str(p) for p in good}  # each state says which input it is of
    records = {run: record.summary() for run, record in page.runs.items()}
    assert [records[g.run]["batch"] for g in graphs] == [batch, batch] and records[single.run]["batch"] is None
