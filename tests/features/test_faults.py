"""Faults while a run is under way: a killed worker, a dropped or stalled download, a runaway size, two writers.

Every fault either leaves a run that completes with the same bytes as a clean one,
or fails it with a message naming the cause and the setting to change, and never
leaves a partial file under a final name.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import threading
import time
from pathlib import Path

import daskgif  # noqa: F401 - before distributed, which snapshots dask.config
import dask
import pytest
from distributed import Client, LocalCluster

from daskgif import build_graph
from daskgif.errors import LockHeld, RunFailed
from daskgif.gif.parse import parse_gif
from frames import image_data, make_gif

DATA = image_data([make_gif(24, 24, seed=i) for i in range(48)])


def paths(tmp_path: Path, name: str = "", **kwargs) -> dict:
    return {"data_file": str(tmp_path / "image-data.img"), "out": str(tmp_path / f"clip{name}.gif"),
            "frames_dir": str(tmp_path / f"frames{name}"), "retry_delay": 0, **kwargs}


def part_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in tmp_path.rglob("*") if p.name.endswith(".part"))


def gated_write(gate: str, state) -> None:
    """An ``on_state`` hook run on the workers: no frame is written before the file *gate* exists, so a kill
    before it lands while every frame is still to write."""
    if state.name == "write-frame" and state.state == "Running":
        while not os.path.exists(gate):
            time.sleep(0.01)


def test_worker_killed_while_writing_frames(tmp_path):
    (tmp_path / "image-data.img").write_bytes(DATA)
    clean = build_graph(**paths(tmp_path, "-clean")).compute(scheduler="sync")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)
        gate = tmp_path / "go"
        graph = build_graph(**paths(tmp_path), frames_per_task=1, on_state=[functools.partial(gated_write, str(gate))])
        future = client.compute(graph)
        deadline = time.monotonic() + 60
        while True:  # wait until frames are being written, then kill a worker that writes one
            writing = {w: keys for w, keys in client.processing().items()
                       if any(str(k).startswith("write-frame-") for k in keys)}
            if writing:
                break
            assert time.monotonic() < deadline and not future.done()
            time.sleep(0.01)
        victim = sorted(writing)[0]
        done_before = client.run_on_scheduler(
            lambda dask_scheduler: sum(ts.state == "memory" for k, ts in dask_scheduler.tasks.items()
                                       if str(k).startswith("write-frame-")))
        os.kill(pids[victim], signal.SIGKILL)
        gate.touch()
        result = future.result(timeout=120)
        assert done_before == 0  # the kill came while every frame was still to write
        client.wait_for_workers(2, timeout=30)
        assert set(client.run(os.getpid).values()) != set(pids.values())  # the killed worker was replaced
    assert result.ok and len(result.frames) == len(clean.frames)
    assert Path(result.path).read_bytes() == Path(clean.path).read_bytes()
    assert [Path(p).read_bytes() for p in result.frames] == [Path(p).read_bytes() for p in clean.frames]
    assert part_files(tmp_path) == []


def no_data_file_while_retrying(data_file: str):
    seen = []

    def hook(state) -> None:
        if state.name == "fetch" and state.state == "Retrying":
            seen.append(os.path.exists(data_file))
    return hook, seen


@pytest.mark.parametrize("content_length", [True, False], ids=["sized", "streamed"])
def test_connection_reset_mid_download_is_retried(tmp_path, http_server, content_length):
    http_server.serve("/data.img", DATA, content_length=content_length)
    url = http_server.reset("/data.img", after_bytes=len(DATA) // 2, times=2)
    hook, seen = no_data_file_while_retrying(str(tmp_path / "image-data.img"))
    result = build_graph(url, **paths(tmp_path), retries=2, on_state=[hook]).compute(scheduler="sync")
    assert result.ok and result.states["fetch"].attempts == 3 and http_server.hits("/data.img") == 3
    assert seen == [False, False]  # no partial data file under its final name between attempts
    assert (tmp_path / "image-data.img").read_bytes() == DATA
    assert part_files(tmp_path) == []


def test_connection_reset_every_time_fails_and_leaves_nothing(tmp_path, http_server):
    http_server.serve("/data.img", DATA)
    url = http_server.reset("/data.img", after_bytes=1000, times=10)
    with pytest.raises(RunFailed, match=r"task 'fetch' failed after 2 attempts: FetchError: cannot fetch "
                                        rf"{url}: \w*(Error|Exception)"):
        build_graph(url, **paths(tmp_path), retries=1).compute(scheduler="sync")
    assert os.listdir(tmp_path) == []


def test_stalled_server_times_out_after_the_configured_timeout(tmp_path, http_server):
    http_server.serve("/data.img", DATA)
    url = http_server.stall("/data.img", seconds=60, after_bytes=500)
    with dask.config.set({"daskgif.fetch-timeout": 0.5}), pytest.raises(RunFailed) as info:
        build_graph(url, **paths(tmp_path), retries=1).compute(scheduler="sync")
    assert (f"task 'fetch' failed after 2 attempts: FetchError: cannot fetch {url}: timed out: no data for 0.5 s "
            "(daskgif.fetch-timeout)") in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("content_length", [True, False], ids=["sized", "streamed"])
def test_download_over_max_bytes_stops_and_fails(tmp_path, http_server, content_length):
    url = http_server.serve("/data.img", DATA, content_length=content_length)
    with dask.config.set({"daskgif.max-bytes": 10_000}), pytest.raises(RunFailed) as info:
        build_graph(url, **paths(tmp_path), retries=2).compute(scheduler="sync")
    assert (f"task 'fetch' failed after 1 attempt: FetchError: cannot fetch {url}: larger than max_bytes=10000 "
            "(daskgif.max-bytes)") in str(info.value)
    assert os.listdir(tmp_path) == []


def test_max_bytes_applies_to_local_files_too(tmp_path):
    source = tmp_path / "source.img"
    source.write_bytes(DATA)
    with dask.config.set({"daskgif.max-bytes": len(DATA) - 1}), pytest.raises(RunFailed, match="larger than max_bytes"):
        build_graph(str(source), **paths(tmp_path)).compute(scheduler="sync")
    with dask.config.set({"daskgif.max-bytes": len(DATA)}):
        assert build_graph(str(source), **paths(tmp_path)).compute(scheduler="sync").ok
    assert part_files(tmp_path) == []


def test_two_runs_writing_the_same_out_leave_one_complete_gif(tmp_path):
    frames = [[make_gif(40, 40, seed=s + i) for i in range(150)] for s in (0, 1000)]
    outs = []
    for n, data in enumerate(frames):
        (tmp_path / f"data{n}.img").write_bytes(image_data(data))
        outs.append(Path(build_graph(**paths(tmp_path, f"-clean{n}", url=str(tmp_path / f"data{n}.img"), data_file=str(tmp_path / f"data{n}.img")))
                         .compute(scheduler="sync").path).read_bytes())
    assert outs[0] != outs[1]
    out = tmp_path / "clip.gif"
    seen, stop = [], threading.Event()

    def watch() -> None:  # whatever exists under the final name is always a whole GIF
        while not stop.is_set():
            try:
                seen.append(out.read_bytes())
            except FileNotFoundError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(3):
            barrier = threading.Barrier(2, timeout=60)
            errors = []

            def run(n: int) -> None:
                try:
                    graph = build_graph(**paths(tmp_path, str(n), url=str(tmp_path / f"data{n}.img"), data_file=str(tmp_path / f"data{n}.img"),
                                                out=str(out)))
                    barrier.wait()
                    graph.compute(scheduler="threads")
                except Exception as e:  # pragma: no cover - reported below
                    errors.append(e)

            threads = [threading.Thread(target=run, args=(n,)) for n in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # Both finish, or the second fails at once on the first's lease of the output: never a mixed GIF.
            assert len(errors) <= 1 and all(isinstance(e.__cause__, LockHeld) for e in errors), errors
            assert out.read_bytes() in outs
    finally:
        stop.set()
        watcher.join()
    assert seen and all(s in outs for s in seen)
    assert len(parse_gif(out.read_bytes()).images) == 150
    assert part_files(tmp_path) == []


def test_killed_download_leaves_a_part_that_remove_stale_parts_clears(tmp_path, http_server):
    import subprocess
    import sys

    from daskgif.storage import remove_stale_parts

    http_server.serve("/data.img", DATA)
    url = http_server.trickle("/data.img", 500, 0.05)
    data_file = tmp_path / "image-data.img"
    code = "import sys; from daskgif.storage import fetch_file; fetch_file(sys.argv[1], sys.argv[2], chunk_size=500)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code, url, str(data_file)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in part_files(tmp_path)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    (part,) = part_files(tmp_path)
    assert part.name.startswith(".image-data.img.") and f"-{proc.pid}-" in part.name
    assert not data_file.exists()
    assert remove_stale_parts(str(tmp_path), "image-data.img") == [str(part)]
    assert os.listdir(tmp_path) == []


def mount_tmpfs(path: Path, options: str) -> None:
    """Mount a tmpfs at *path* (created) with *options*, or skip: it needs root and a system that allows it."""
    import subprocess

    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}): {done.stderr.strip() or done.returncode}")


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 64 kB tmpfs filled to the last byte: files can be created there, not written."""
    import subprocess

    path = tmp_path / "full"
    mount_tmpfs(path, "size=64k")
    try:
        with open(path / "filler", "wb", buffering=0) as f, pytest.raises(OSError, match="No space left"):
            while True:
                f.write(b"\0" * 4096)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def read_only(tmp_path):
    import subprocess

    path = tmp_path / "read-only"
    mount_tmpfs(path, "ro,size=64k")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("where", ["data_file", "frames_dir", "out"])
def test_a_full_disk_fails_the_run_naming_the_file(tmp_path, full_disk, where):
    (tmp_path / "source.img").write_bytes(DATA)
    target = {"data_file": "image-data.img", "frames_dir": "frames", "out": "clip.gif"}[where]
    kwargs = paths(tmp_path, url=str(tmp_path / "source.img"), **{where: str(full_disk / target)})
    with pytest.raises(RunFailed) as failed:
        build_graph(**kwargs).compute(scheduler="sync")
    message = str(failed.value)
    assert "No space left on device" in message and f"'{full_disk / target}" in message, message
    assert [p for p in full_disk.rglob("*") if not p.is_dir()] == [full_disk / "filler"]  # no .part, no .lock


def test_a_read_only_folder_for_the_data_file_fails_the_run_naming_it(tmp_path, read_only):
    (tmp_path / "source.img").write_bytes(DATA)
    graph = build_graph(**paths(tmp_path, url=str(tmp_path / "source.img"), data_file=str(read_only / "image.img")))
    data_file = read_only / "image.img"
    with pytest.raises(RunFailed, match=re.escape(f"task 'fetch' failed after 1 attempt: OSError: [Errno 30] Read-only "
                                                  f"file system (taking the lock {data_file}.lock, which guards "
                                                  f"{data_file}): '{data_file}.lock'")):
        graph.compute(scheduler="sync")


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_a_second_sigterm_aborts_at_once_and_leaves_no_file_behind(tmp_path, http_server, scheduler):
    import subprocess
    import sys

    http_server.serve("/data.img", DATA)
    url = http_server.stall("/data.img", seconds=3600, after_bytes=1000)  # the download never ends by itself
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "daskgif", "run", "--url", url, "--scheduler", scheduler],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not part_files(tmp_path):  # the download has begun: its temporary file exists
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        assert (tmp_path / "image-data.img.lock").exists()
        proc.send_signal(signal.SIGTERM)
        while "SIGTERM received: stopping" not in (line := proc.stderr.readline()):  # the first one was handled
            assert line, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM again: aborting now" in stderr and "Traceback" not in stderr
    assert sorted(os.listdir(tmp_path)) == []
