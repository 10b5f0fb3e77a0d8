"""An attempt that runs past its timeout fails as a transient TimeoutError; its late result is ignored."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import dask
import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

import daskgif  # noqa: F401 - before distributed, which snapshots dask.config
from daskgif import build_graph
from daskgif.errors import RunFailed, TaskTimeout
from daskgif.core.runtime import given_up, in_thread
from daskgif.core.task import Task
from daskgif.errors import Cancelled
from daskgif.gif.join import GifWriter
from daskgif.pipeline import steps
from daskgif.pipeline.cancel import check_cancelled
from daskgif.errors import is_transient
from daskgif.pipeline.limits import check_timeouts
from frames import image_data, make_gif

import distributed

TIMEOUT = 0.3


class SlowMemoryFileSystem(MemoryFileSystem):
    """``slowmem://``: a memory file system whose frame uploads block until ``release`` is set."""

    protocol = "slowmem"
    store: dict = {}
    pseudo_dirs = [""]
    release = threading.Event()
    started = 0

    def put_file(self, lpath, rpath, *args, **kwargs):
        if "frame_" in rpath:
            type(self).started += 1
            self.release.wait(30)
        return super().put_file(lpath, rpath, *args, **kwargs)


@pytest.fixture
def slowmem():
    fsspec.register_implementation("slowmem", SlowMemoryFileSystem, clobber=True)
    SlowMemoryFileSystem.release.clear()
    SlowMemoryFileSystem.started = 0
    yield SlowMemoryFileSystem
    SlowMemoryFileSystem.release.set()  # let the abandoned threads end
    SlowMemoryFileSystem.store.clear()


def test_task_timeout_is_a_transient_timeout_error_that_pickles():
    error = TaskTimeout("write-frame", 2.0, "daskgif.task-timeout.write-frame")
    assert isinstance(error, TimeoutError) and is_transient(error)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_a_late_attempt_is_retried_then_fails_and_its_result_is_ignored():
    calls, release = [], threading.Event()

    def slow(x):
        calls.append(x)
        release.wait(60)  # every attempt is late until the test lets them go
        return x

    with pytest.raises(RunFailed, match=r"after 2 attempts: TaskTimeout: .* timeout of 0.2 s \(timeout\)"):
        Task(slow, name="slow", timeout=0.2, retries=1).run(1)
    assert len(calls) == 2 and not release.is_set()  # the task gave up on both attempts without waiting for them
    release.set()
    assert Task(slow, name="slow", timeout=0.5).run(7).value == 7  # the third call is quick


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout must be None or a positive number of seconds, got 0"):
        Task(abs, timeout=0)


def test_the_setting_takes_one_number_or_one_per_step():
    assert check_timeouts(None)["write-frame"] is None and check_timeouts(5)["fetch"] == 5
    with dask.config.set({"daskgif.task-timeout": {"write-frame": 2}}):
        p = build_graph(data_file="memory://t/d.img", out="memory://t/c.gif").params
    assert p.task_timeout == {"fetch": None, "split": None, "write-frame": 2, "combine": None}
    with dask.config.set({"daskgif.task-timeout": "soon"}), pytest.raises(ValueError, match="task-timeout"):
        build_graph()


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_a_stalled_frame_write_fails_the_run_within_its_timeouts(slowmem, scheduler):
    fsspec.filesystem("memory").pipe("/t-slow/in.img", image_data([make_gif(8, 8)]))
    retries = 1
    with dask.config.set({"daskgif.task-timeout.write-frame": TIMEOUT}):
        graph = build_graph(url="memory://t-slow/in.img", data_file=f"memory://t-slow/{scheduler}.img",
                            out=f"memory://t-slow/{scheduler}.gif", frames_dir=f"slowmem://t-slow/{scheduler}",
                            retries=retries, retry_delay=0)
    with pytest.raises(RunFailed) as failed:
        graph.compute(scheduler=scheduler)
    message = str(failed.value)
    assert "'write-frame' (frame 0) failed after 2 attempts" in message, message
    assert f"timeout of {TIMEOUT:g} s (daskgif.task-timeout.write-frame)" in message, message
    assert slowmem.started == retries + 1  # each attempt reached the write and was abandoned there
    assert not fsspec.filesystem("slowmem").exists(f"/t-slow/{scheduler}/frame_00.gif")


STUCK, STARTED = threading.Event(), threading.Event()


def wait_stuck(seconds: float) -> bool:
    STARTED.set()
    return STUCK.wait(seconds)


def test_on_a_worker_the_wait_holds_no_thread_slot():
    stuck = STUCK
    stuck.clear()
    STARTED.clear()
    try:
        with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                                dashboard_address=":0") as client:
            slow = client.submit(Task(wait_stuck, name="stuck", timeout=3).run, 10, pure=False)
            assert STARTED.wait(60)  # the stuck task has its slot, then secedes while it waits
            assert client.submit(sum, [1, 2], pure=False).result(timeout=2) == 3  # while it waits
            with pytest.raises(RunFailed, match="timeout of 3 s"):
                slow.result(timeout=10)
    finally:
        stuck.set()


class StallingGifWriter(GifWriter):
    """A GIF writer whose frames wait for ``release``: a ``combine`` that runs past its timeout."""

    entered, release = threading.Event(), threading.Event()

    def add(self, data):
        type(self).entered.set()
        assert type(self).release.wait(60)
        return super().add(data)


def test_an_attempt_given_up_on_stops_at_its_next_check():
    go = threading.Event()

    def attempt():
        assert go.wait(60)
        check_cancelled("r-late")
        return "renamed into place"

    future = in_thread(attempt, "daskgif-late", timeout=0.01, give_up=True)  # late, whatever the machine
    assert not future.done()
    go.set()
    with pytest.raises(Cancelled, match="given up on after its timeout"):
        future.result(timeout=60)
    assert not given_up()  # the caller's own thread is never given up on


def test_a_combine_that_timed_out_never_renames_its_output_afterwards(tmp_path, monkeypatch):
    monkeypatch.setitem(steps.WRITERS, ".slowgif", StallingGifWriter)
    StallingGifWriter.entered.clear()
    StallingGifWriter.release.clear()
    (tmp_path / "in.img").write_bytes(image_data([make_gif(8, 8), make_gif(8, 8)]))
    out = tmp_path / "clip.slowgif"
    with dask.config.set({"daskgif.task-timeout.combine": TIMEOUT}):
        graph = build_graph(url=str(tmp_path / "in.img"), data_file=str(tmp_path / "d.img"), out=str(out),
                            frames_dir=str(tmp_path / "frames"), retries=0)
    try:
        with pytest.raises(RunFailed, match="timeout of 0.3 s"):
            graph.compute(scheduler="sync")
        assert StallingGifWriter.entered.wait(60)  # on a slow machine the late attempt gets there later
    finally:
        StallingGifWriter.release.set()  # the late attempt goes on writing: it must stop before the rename
    for thread in [t for t in threading.enumerate() if t.name == "daskgif-combine-attempt"]:
        thread.join(60)
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


# --- A script that computes with the processes scheduler, as a user writes it ---------------------------

SCRIPT = """\
import daskgif

graph = daskgif.build_graph(data_file="d.img", out="c.gif", frames_dir="frames")
{compute}
"""


def run_script(folder: Path, compute: str) -> subprocess.CompletedProcess:
    script = folder / "nightly.py"
    script.write_text(SCRIPT.format(compute=compute))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True, env=env,
                          timeout=240)


@pytest.mark.parametrize("how", ["graph.compute(scheduler='processes')",
                                 "__import__('dask').compute(graph, scheduler='processes')"])
def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path, how):
    done = run_script(tmp_path, f"result = {how}\nprint('ok')")
    assert done.returncode != 0 and "ok" not in done.stdout
    # Every spawned child re-imports the script and is stopped at its line 4, with the remedy.
    assert (f"{tmp_path / 'nightly.py'}, line 4, computes while a child process re-imports it to start"
            in done.stderr), done.stderr
    assert """Put the code that computes under 'if __name__ == "__main__":' in the script""" in done.stderr
    assert "LockHeld" not in done.stderr and not (tmp_path / "c.gif").exists()


def test_the_same_script_with_the_guard_runs(tmp_path):
    # Building at the top level is fine: the children build a graph (no I/O) but compute nothing.
    done = run_script(tmp_path, "if __name__ == '__main__':\n    print(graph.compute(scheduler='processes').ok)")
    assert done.returncode == 0 and done.stdout == "True\n", done.stderr
    assert (tmp_path / "c.gif").exists()
