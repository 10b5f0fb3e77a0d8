"""What ``daskgif run`` prints, counted line by line on real subprocess runs, and how it reaches clusters."""

from __future__ import annotations

import json
import re
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import daskgif  # noqa: F401  (before distributed, which snapshots dask.config)

import distributed


def daskgif(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskgif", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_a_successful_run_prints_one_summary_line_and_only_the_dashboard_link(tmp_path):
    done = daskgif("run", "--workers", "2", cwd=tmp_path, env={"DASK_DASKGIF__PROGRESS_INTERVAL": "3600"})
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and done.stdout.startswith("Wrote clip.gif (")
    lines = done.stderr.splitlines()
    assert len(lines) == 3 and lines[0].startswith("Dashboard (while the run runs): http://127.0.0.1:")
    assert lines[1].startswith("  daskgif runs: http://127.0.0.1:") and lines[1].endswith("/daskgif")
    # stderr is no TTY: plain progress lines, here only the last (the interval is an hour)
    assert re.fullmatch(r"(\d+)/\1 frames \(100%\), .* frames/s, elapsed .*, ETA .*", lines[2])


def test_json_prints_only_json(tmp_path):
    done = daskgif("run", "--workers", "1", "--json", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    assert json.loads(done.stdout)["ok"] is True and len(done.stdout.splitlines()) == 1


def test_a_failed_run_prints_its_cause_once(tmp_path):
    (tmp_path / "bad.img").write_bytes(b"GIF89a" + b"\x00" * 5)
    for scheduler in (["--scheduler", "sync"], ["--workers", "1"]):
        done = daskgif("run", *scheduler, "--url", "bad.img", "--data-file", "bad.img", cwd=tmp_path)
        assert done.returncode == 1 and done.stdout == ""
        errors = [line for line in done.stderr.splitlines()
                  if not line.startswith(("Dashboard (while the run runs): ", "  daskgif runs: "))]
        assert len(errors) == 1 and errors[0].startswith("Error: task 'split' failed after 1 attempt:"), done.stderr


def test_verbose_shows_task_states_and_the_end_of_a_cluster_run(tmp_path):
    done = daskgif("-v", "run", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "daskgif: Task 'fetch': Success" in done.stderr and "daskgif: Task 'combine': Success" in done.stderr
    assert "Run SUCCESS: all reference tasks succeeded" in done.stderr
    assert "distributed" not in done.stderr
    louder = daskgif("-vv", "run", "--workers", "1", cwd=tmp_path)
    assert louder.returncode == 0 and "distributed.scheduler - INFO" in louder.stderr


def test_a_read_only_frames_dir_fails_at_once_naming_it(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        done = daskgif("run", "--scheduler", "sync", "--retries", "5", "--retry-delay", "10", "--frames-dir",
                       str(ro / "frames"), cwd=tmp_path)
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert done.returncode == 1, done.stderr
    assert "Read-only file system" in done.stderr and str(ro / "frames") in done.stderr
    assert "1 attempt" in done.stderr and "Retrying" not in done.stderr


# --- clusters by address -------------------------------------------------------------------------------


def test_an_unknown_scheduler_name_is_a_usage_error(tmp_path):
    done = daskgif("run", "--scheduler", "thread", cwd=tmp_path)
    assert done.returncode == 2 and "scheduler must be sync, threads, processes or a scheduler address" in done.stderr


def silent_listener() -> tuple[socket.socket, int]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(server.accept()[0]) for _ in range(8)], daemon=True).start()
    return server, server.getsockname()[1]


def test_addresses_that_refuse_hang_or_are_not_dask_fail_in_one_line(tmp_path, http_server):
    server, silent = silent_listener()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    refused = free.getsockname()[1]
    free.close()  # nothing listens there now
    http = http_server.url("/").split("//")[1].rstrip("/")
    try:
        for address in (f"tcp://127.0.0.1:{refused}", f"tcp://127.0.0.1:{silent}", f"tcp://{http}"):
            done = daskgif("run", "--scheduler", address, cwd=tmp_path, env={"DASK_DASKGIF__CONNECT_TIMEOUT": "2"})
            assert done.returncode == 1, done.stderr
            assert done.stderr.splitlines() == [done.stderr.strip()]
            assert done.stderr.startswith(f"Error: cannot connect to the Dask scheduler at {address}:")
            assert "daskgif.connect-timeout is 2 s" in done.stderr
    finally:
        server.close()


def test_dask_scheduler_address_is_honoured(tmp_path):
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") \
            as cluster, distributed.Client(cluster) as client:
        done = daskgif("run", "--json", cwd=tmp_path, env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address})
        assert done.returncode == 0, done.stderr
        prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert {"fetch", "split", "map-frames", "write-frame", "combine"} <= set(prefixes)
    assert json.loads(done.stdout)["ok"] is True


# --- stopping -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [["--workers", "2"], ["--scheduler", "processes"]], ids=["cluster", "processes"])
def test_sigterm_on_a_single_run_cancels_it_cleanly(tmp_path, where):
    from daskgif.pipeline.sample import sample_path
    from daskgif.gif.split import split_bytes

    sample = Path(sample_path()).read_bytes()
    (tmp_path / "big.img").write_bytes(sample * 80)
    frames = tmp_path / "frames"
    proc = subprocess.Popen([sys.executable, "-m", "daskgif", "run", *where, "--url", "big.img",
                             "--data-file", "d.img"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not (frames.exists() and len(os.listdir(frames)) > 20) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM after 1 run(s): run 1 was cancelled" in stderr
    assert "leaked semaphore" not in stderr and "Traceback" not in stderr
    # Queued frame tasks were dropped: fewer frames than the input holds, no clip, no temporary file.
    assert len(os.listdir(frames)) < len(split_bytes(sample * 80)) and not (tmp_path / "clip.gif").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


def test_the_next_run_removes_a_killed_runs_temporary_files(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from daskgif.storage.paths import part_name

    leftover = [tmp_path / part_name(name).replace(f"-{os.getpid()}-", f"-{dead.pid}-")
                for name in ("clip.gif", "image-data.img")]
    (tmp_path / "frames").mkdir()
    leftover.append(tmp_path / "frames" / part_name("frame_03.gif").replace(f"-{os.getpid()}-", f"-{dead.pid}-"))
    alive = tmp_path / part_name("clip.gif")  # this process's: a live writer's file is never removed
    for path in (*leftover, alive):
        path.write_bytes(b"half a GIF")
    done = daskgif("run", "--scheduler", "sync", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not any(p.exists() for p in leftover) and alive.exists()


def test_a_single_run_and_a_scheduled_run_print_the_same(tmp_path):
    single = daskgif("run", "--scheduler", "sync", "--json", cwd=tmp_path)
    scheduled = daskgif("run", "--scheduler", "sync", "--json", "--every", "1h", "--max-runs", "1", cwd=tmp_path)
    assert single.returncode == scheduled.returncode == 0, (single.stderr, scheduled.stderr)
    assert sorted(json.loads(single.stdout)) == sorted(json.loads(scheduled.stdout))
    texts = [daskgif("run", "--scheduler", "sync", *extra, cwd=tmp_path).stdout
             for extra in ([], ["--every", "1h", "--max-runs", "1"])]
    shape = [re.sub(r"\d+\.\d+ s", "T s", text) for text in texts]
    assert shape[0] == shape[1] and len(texts[0].splitlines()) == 1
