"""A run happens inside Dask: failures are erred tasks, progress comes from Dask's events,
and the local schedulers run the per-frame tasks as Dask says they do."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import dask
import pytest
from dask.utils import key_split

import daskgif  # noqa: F401  (before distributed, which snapshots dask.config)
from daskgif.pipeline import graph, steps
from daskgif.errors import RunFailed
from daskgif.core.events import TOPIC
from daskgif.views.progress import Progress
from daskgif.pipeline.sample import sample_path
from daskgif.gif.split import split_bytes
from frames import corrupt_code, image_data, make_gif, make_palette, make_raw_gif

import distributed

SAMPLE = Path(sample_path()).read_bytes()
FRAMES = len(split_bytes(SAMPLE))


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") \
            as cluster, distributed.Client(cluster) as client:
        yield client


def paths(tmp_path: Path, **kwargs) -> dict:
    return {"data_file": str(tmp_path / "image-data.img"), "out": str(tmp_path / "clip.gif"),
            "frames_dir": str(tmp_path / "frames"), "retry_delay": 0, **kwargs}


def scheduler_states(client, token: str) -> dict[str, str]:
    def states(dask_scheduler, token):
        return {str(k): ts.state for k, ts in dask_scheduler.tasks.items() if token in str(k)}

    return client.run_on_scheduler(states, token=token)


def test_a_failed_frame_is_an_erred_task_and_nothing_downstream_runs(tmp_path, client):
    (tmp_path / "frames" / "frame_02.gif").mkdir(parents=True)  # frame 2 cannot be written: a permanent error
    pipeline = graph.build_graph(**paths(tmp_path), retries=3, frames_per_task=1)
    with distributed.get_task_stream(client) as stream:
        future = client.compute(pipeline)
        distributed.wait(future)
        states = scheduler_states(client, pipeline.run)
    assert future.status == "error"
    error = future.exception()
    assert isinstance(error, RunFailed)
    assert str(error) == ("task 'write-frame' (frame 2) failed after 1 attempt: IsADirectoryError: [Errno 21] "
                          f"Is a directory: '{tmp_path / 'frames' / 'frame_02.gif'}'")  # the file, not a .part
    # The dashboard's view: the batch holding frame 2 erred, and so did everything that depends on it.
    # A batch's key names the frames it holds: write-frame-<first>-<last>-<run>.
    assert states[f"write-frame-2-2-{pipeline.run}"] == "erred"
    assert states.get(f"write-frame-1-1-{pipeline.run}", "forgotten") in ("released", "forgotten")  # freed
    for step in ("map-frames", "combine"):
        assert states[f"{step}-{pipeline.run}"] == "erred"
    ran = {key_split(t["key"]) for t in stream.data}
    assert "combine" not in ran
    errored = {str(t["key"]) for t in stream.data if t.get("status") == "error"}
    assert f"write-frame-2-2-{pipeline.run}" in errored
    # Every state known when it failed: the steps upstream and the frames.
    result = error.result
    assert result.counts()["fetch"] == {"Success": 1} and result.counts()["split"] == {"Success": 1}
    assert result.states["write-frame"].counts == {"Success": FRAMES - 1, "Failed": 1}
    assert result.states["write-frame"][2].message.startswith("IsADirectoryError")
    assert not (tmp_path / "clip.gif").exists()


def test_compute_raises_run_failed_and_a_skip_is_a_value(tmp_path, client):
    raw = make_raw_gif(20, 10, make_palette(128), bytes(i % 128 for i in range(200)))
    (tmp_path / "image-data.img").write_bytes(image_data([make_gif(8, 8, seed=1), corrupt_code(raw)]))
    data = str(tmp_path / "image-data.img")
    with pytest.raises(RunFailed, match=r"task 'write-frame' \(frame 1\) failed after 1 attempt: GifFormatError: "
                                        r"frame 1 at byte \d+: image data does not decode"):
        graph.build_graph(**paths(tmp_path, url=data)).compute()
    result = graph.build_graph(**paths(tmp_path, url=data), on_error="skip").compute()
    assert result.ok and result.states["write-frame"].counts == {"Success": 1, "Skipped": 1}
    assert result.states["fetch"].state == "Skipped"  # the data file is what the URL gave


def test_progress_and_hooks_come_from_dask_events(tmp_path, client):
    data = image_data([make_gif(16, 16, seed=i) for i in range(300)])
    (tmp_path / "big.img").write_bytes(data)
    seen, shown = [], []

    class Recording(Progress):
        def draw(self, final=False):
            shown.append(self.done)
            super().draw(final)

    pipeline = graph.build_graph(**paths(tmp_path, url=str(tmp_path / "big.img")), frames_per_task=20,
                                 on_state=[seen.append])
    with Recording(stream=io.StringIO(), clock=lambda: 0.0) as progress:  # 10 s never pass
        result = pipeline.compute()
    assert result.ok
    assert progress.total == 300 and progress.done == 300 and shown[-1] == 300
    assert shown == sorted(shown)  # monotonic
    # Not a TTY, and daskgif.progress-interval (10 s) never passed: one plain line, at 100 %.
    assert progress.stream.getvalue() == "300/300 frames (100%), ? frames/s, elapsed 00:00, ETA ?\n"
    steps = [(s.name, s.state) for s in seen]
    assert steps[0] == ("fetch", "Running") and steps[-1] == ("combine", "Success")
    # The same messages are kept by the scheduler (the runs page reads them); a few per batch, not one per frame.
    mine = [msg for _, msg in client.get_events(TOPIC) if msg.get("run") == pipeline.run]
    frames = [m for m in mine if m["kind"] == "frames"]
    assert sum(sum(m["counts"].values()) for m in frames) == 300 and len(frames) <= 30
    assert {m["kind"] for m in mine} == {"run", "step", "map", "frames"}


def test_sync_runs_every_frame_in_the_calling_thread(tmp_path, monkeypatch):
    threads = []
    write = steps.write_frame

    def recording(span, params, count, **kwargs):
        threads.append(threading.get_ident())
        return write(span, params, count, **kwargs)

    monkeypatch.setattr(steps, "write_frame", recording)
    result = graph.build_graph(**paths(tmp_path), frames_per_task=4).compute(scheduler="sync")
    assert result.ok and len(threads) == FRAMES
    assert set(threads) == {threading.get_ident()}  # pdb works: one thread, the caller's


@pytest.mark.parametrize("num_workers", [1, 3])
def test_threads_uses_the_configured_pool_size(tmp_path, monkeypatch, num_workers):
    threads, lock, meeting = set(), threading.Lock(), [threading.Barrier(num_workers, timeout=60)]
    write = steps.write_frame

    def met(span, params, count, **kwargs):
        with lock:
            first = threading.get_ident() not in threads
            threads.add(threading.get_ident())
        if first:  # every thread's first frame waits until num_workers threads are writing at once
            meeting[0].wait()
        return write(span, params, count, **kwargs)

    monkeypatch.setattr(steps, "write_frame", met)
    result = graph.build_graph(**paths(tmp_path), frames_per_task=1).compute(scheduler="threads",
                                                                            num_workers=num_workers)
    assert result.ok
    assert len(threads) == num_workers  # a smaller pool breaks the meeting; a larger one shows here
    with dask.config.set({"scheduler": "threads", "num_workers": 1, "daskgif.resume": False}):
        threads.clear()
        meeting[0] = threading.Barrier(1)
        assert graph.build_graph(**paths(tmp_path), frames_per_task=1).compute().ok
    assert len(threads) == 1


def test_processes_runs_the_frames_in_the_worker_process(tmp_path):
    result = graph.build_graph(**paths(tmp_path)).compute(scheduler="processes")
    assert result.ok and result.states["write-frame"].counts == {"Success": FRAMES}


def test_a_failed_run_frees_the_frames_that_finished(tmp_path, client):
    (tmp_path / "frames" / "frame_02.gif").mkdir(parents=True)  # frame 2 cannot be written
    with pytest.raises(RunFailed):
        client.compute(graph.build_graph(**paths(tmp_path), frames_per_task=1)).result()

    def held(dask_worker):
        return [str(k) for k in dask_worker.data if "write-frame" in str(k)]

    # Freed as the run fails (the release goes out before the failure); kept, they stayed for 30 s and more.
    deadline = time.monotonic() + 20
    while any(client.run(held).values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(client.run(held).values()), client.run(held)
