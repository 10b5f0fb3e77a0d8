"""Schedules: duration parsing, cron fire times on a fixed clock, the run loop, and ``daskgif run --every``.

The loop is tested with an injected clock and sleep (no real waiting); the
command line with real subprocesses, a real HTTP server and real signals.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import dask
import pytest

import daskgif
from daskgif.ops import schedule
from daskgif.ops.schedule import Cron, Every, ScheduledRun, describe_due, next_fire, parse_duration, run_schedule
from daskgif.gif.split import split_bytes

UTC = timezone.utc


class FakeClock:
    """A clock that moves only when slept on or when a fake run takes time."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def fake_runs(monkeypatch):
    """Replace ``run_once`` by a fake run that takes ``durations[i]`` seconds of the fake clock."""
    calls: list[dict] = []

    def install(clock: FakeClock, durations=(), fail=()):
        def run_once(params, *, number, client, scheduler, stop, clock, scheduled, graph=None, progress=None):
            start = clock()
            clock.now += durations[number - 1] if number <= len(durations) else 1.0
            calls.append({"number": number, "scheduled": scheduled, "start": start, "params": dict(params),
                          "client": client})
            return ScheduledRun(number, scheduled, start, clock(), ok=number not in fail,
                                message="boom" if number in fail else "")

        monkeypatch.setattr(schedule, "run_once", run_once)
        return calls

    return install


@pytest.mark.parametrize("text, seconds", [("24h", 86400), ("30m", 1800), ("10s", 10), ("1h30m", 5400),
                                           ("1d2h", 93600), ("90", 90), (2.5, 2.5), (" 5S ", 5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "10x", "30m1h", "1h1h", "-5", "0", "1h 30m", "inf", "nan", "5 s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="duration must"):
        parse_duration(text)


def test_next_fire_times_on_a_fixed_clock():
    after = datetime(2024, 1, 1, 3, 0, tzinfo=UTC)
    assert next_fire("0 2 * * *", after) == datetime(2024, 1, 2, 2, 0, tzinfo=UTC)
    assert next_fire("0 2 * * *", datetime(2024, 1, 1, 1, 59, 59, tzinfo=UTC)) == datetime(2024, 1, 1, 2, 0, tzinfo=UTC)
    # Strictly after: a run that fired at 02:00 is next due the following day.
    assert next_fire("0 2 * * *", datetime(2024, 1, 2, 2, 0, tzinfo=UTC)) == datetime(2024, 1, 3, 2, 0, tzinfo=UTC)
    assert next_fire("30 9 * * 1-5", datetime(2024, 1, 5, 10, 0, tzinfo=UTC)) == datetime(2024, 1, 8, 9, 30, tzinfo=UTC)
    cron = Cron("*/15 * * * *", tz=UTC)
    t0 = datetime(2024, 1, 1, 3, 7, tzinfo=UTC).timestamp()
    assert cron.first(t0) == datetime(2024, 1, 1, 3, 15, tzinfo=UTC).timestamp()
    assert cron.after(cron.first(t0)) == datetime(2024, 1, 1, 3, 30, tzinfo=UTC).timestamp()
    assert Every(10).first(t0) == t0 and Every(10).after(t0) == t0 + 10


def test_cron_follows_daylight_saving_time():
    from dateutil import tz

    paris = tz.gettz("Europe/Paris")
    # 2024-03-31: clocks go from 02:00 to 03:00; a 02:30 job fires at 03:00 local.
    first = next_fire("30 2 * * *", datetime(2024, 3, 30, 12, 0, tzinfo=paris))
    assert first.date() == datetime(2024, 3, 31).date() and first.utcoffset().total_seconds() == 7200
    assert next_fire("0 12 * * *", datetime(2024, 3, 31, 0, 0, tzinfo=paris)).utcoffset().total_seconds() == 7200


@pytest.mark.parametrize("expr", ["at two", "61 * * * *", "* * *", "", "0 0 31 2 *", "0 0 30 2 *"])
def test_bad_cron_is_refused(expr):
    with pytest.raises(ValueError, match="cron must be a cron expression"):
        Cron(expr)


def test_every_runs_on_time_without_sleeping_for_real(fake_runs):
    clock = FakeClock(1000.0)
    calls = fake_runs(clock, durations=[2, 3, 1])
    runs = run_schedule({"out": "a.gif"}, every="10s", max_runs=3, clock=clock, sleep=clock.sleep)
    assert [r.number for r in runs] == [1, 2, 3] and all(r.ok for r in runs)
    assert [c["start"] for c in calls] == [1000.0, 1010.0, 1020.0]
    assert clock.sleeps == [8.0, 7.0]


def test_an_overrunning_run_delays_the_next_and_says_so(fake_runs, caplog):
    clock = FakeClock(0.0)
    calls = fake_runs(clock, durations=[25, 1, 1])
    with caplog.at_level(logging.WARNING, logger="daskgif.ops.schedule"):
        run_schedule({}, every=10, max_runs=3, clock=clock, sleep=clock.sleep)
    # Never overlapping: run 2 starts when run 1 ends (late), then the interval counts from there.
    assert [c["start"] for c in calls] == [0.0, 25.0, 35.0]
    assert clock.sleeps == [9.0]
    assert "Run 1 took 25.0 s, past the next fire time" in caplog.text and "run 2 starts now, 15.0 s late" in caplog.text


def test_cron_schedule_with_a_fixed_clock(fake_runs):
    start = datetime(2024, 1, 1, 3, 0, tzinfo=UTC).timestamp()
    clock = FakeClock(start)
    calls = fake_runs(clock, durations=[60, 60])
    run_schedule({}, cron="0 2 * * *", max_runs=2, clock=clock, sleep=clock.sleep, tz=UTC)
    started = [datetime.fromtimestamp(c["start"], UTC) for c in calls]
    assert started == [datetime(2024, 1, 2, 2, 0, tzinfo=UTC), datetime(2024, 1, 3, 2, 0, tzinfo=UTC)]
    assert clock.sleeps == [23 * 3600.0, 24 * 3600.0 - 60]


def test_each_wait_says_when_the_next_run_is_in_local_time_and_utc(fake_runs):
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    clock = FakeClock(datetime(2024, 1, 1, 12, 0, tzinfo=UTC).timestamp())
    fake_runs(clock, durations=[60, 60])
    lines = []  # as the command line prints them

    def on_wait(number, due):
        lines.append(f"daskgif: next run ({number}) {describe_due(due, clock(), new_york)}")

    run_schedule({}, cron="0 22 * * *", max_runs=2, clock=clock, sleep=clock.sleep, tz=new_york, on_wait=on_wait)
    assert lines == ["daskgif: next run (1) at 2024-01-01 22:00:00 EST (2024-01-02 03:00:00 UTC), in 15 h 0 min",
                     "daskgif: next run (2) at 2024-01-02 22:00:00 EST (2024-01-03 03:00:00 UTC), in 23 h 59 min"]


def test_a_cluster_of_its_own_is_started_for_each_run_when_the_wait_is_long(fake_runs):
    events = []

    @contextlib.contextmanager
    def cluster():
        client = f"client-{sum(e == 'start' for e in events) + 1}"
        events.append("start")
        yield client
        events.append("close")

    def on_wait(number, due):
        events.append(f"wait for {number}")

    clock = FakeClock(0.0)
    calls = fake_runs(clock)
    run_schedule({}, every="1h", max_runs=3, clock=clock, sleep=clock.sleep, cluster=cluster, on_wait=on_wait)
    # Closed before each hour's wait (so the wait line can say so), started again for the next run.
    assert events == ["start", "close", "wait for 2", "start", "close", "wait for 3", "start", "close"]
    assert [c["client"] for c in calls] == ["client-1", "client-2", "client-3"]

    events.clear()
    clock = FakeClock(0.0)
    calls = fake_runs(clock)
    run_schedule({}, every=schedule.IDLE_CLUSTER_LIMIT, max_runs=3, clock=clock, sleep=clock.sleep,
                 cluster=cluster, on_wait=on_wait)
    assert events == ["start", "wait for 2", "wait for 3", "close"]  # short waits: one cluster for all runs
    assert [c["client"] for c in calls][-3:] == ["client-1"] * 3


def test_a_cluster_of_its_own_is_recycled_every_n_runs_and_a_given_client_never(fake_runs):
    events = []

    @contextlib.contextmanager
    def cluster():
        events.append("start")
        yield f"client-{events.count('start')}"
        events.append("close")

    clock = FakeClock(0.0)
    calls = fake_runs(clock)
    with dask.config.set({"daskgif.schedule.recycle-every": 2}):
        run_schedule({}, every=1, max_runs=5, clock=clock, sleep=clock.sleep, cluster=cluster)
        assert events == ["start", "close"] * 3
        assert [c["client"] for c in calls] == ["client-1", "client-1", "client-2", "client-2", "client-3"]
        calls.clear()
        run_schedule({}, every=1, max_runs=5, clock=clock, sleep=clock.sleep, client="given")
    assert [c["client"] for c in calls] == ["given"] * 5 and len(events) == 6


def test_a_failed_run_is_reported_and_the_schedule_goes_on(fake_runs, tmp_path):
    clock = FakeClock(0.0)
    fake_runs(clock, fail={2})
    seen = []
    runs = run_schedule({}, every=5, max_runs=3, clock=clock, sleep=clock.sleep, on_result=seen.append,
                        history=str(tmp_path / "h.jsonl"))
    assert [r.ok for r in runs] == [True, False, True] and seen == runs
    lines = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert [(line["run"], line["ok"], line["message"]) for line in lines] == [(1, True, ""), (2, False, "boom"), (3, True, "")]


def test_params_may_change_per_run(fake_runs):
    clock = FakeClock(0.0)
    calls = fake_runs(clock)
    run_schedule(lambda n: {"out": f"clip-{n}.gif", "force": n > 1}, every=1, max_runs=2, clock=clock, sleep=clock.sleep)
    assert [c["params"] for c in calls] == [{"out": "clip-1.gif", "force": False}, {"out": "clip-2.gif", "force": True}]


def test_stop_between_runs_ends_the_schedule(fake_runs):
    clock = FakeClock(0.0)
    fake_runs(clock)
    stop = threading.Event()

    def sleep(seconds):
        stop.set()
        return True

    runs = run_schedule({}, every=60, clock=clock, sleep=sleep, stop=stop)
    assert len(runs) == 1


def test_no_schedule_means_one_run(fake_runs):
    clock = FakeClock(0.0)
    calls = fake_runs(clock)
    assert len(run_schedule({}, clock=clock, sleep=clock.sleep)) == 1 and len(calls) == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"every": "1s", "cron": "* * * * *"}, "mutually exclusive"),
    ({"every": "1s", "max_runs": 0}, "max_runs must be a positive integer"),
    ({"every": "soon"}, "every must be a positive duration"),
    ({"cron": "nightly"}, "cron must"),
    ({"notify": "ftp://x/y"}, "notify must be an http:// or https:// URL"),
])
def test_bad_schedule_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_schedule({}, **kwargs)


def test_bad_graph_arguments_fail_before_the_first_run():
    with pytest.raises(ValueError, match="duration"):
        run_schedule({"duration": -1}, every="1h", sleep=lambda s: pytest.fail("slept"))


def test_run_schedule_is_exported():
    assert daskgif.run_schedule is run_schedule


def test_safe_parameters_leave_secrets_out():
    run = schedule.run_once({"url": "https://u:pw@127.0.0.1:9/x.img", "storage_options": {"headers": {"Authorization": "s3cr3t"}},
                             "retry_delay": 0, "retries": 0}, scheduler="sync")
    record = json.dumps(run.to_record())
    assert not run.ok and "s3cr3t" not in record and ":pw@" not in record and "u:***@127.0.0.1" in record


# --- the real pipeline ---------------------------------------------------------------------------------


def test_run_schedule_runs_the_pipeline_and_rebuilds_the_graph(tmp_path):
    out = tmp_path / "clip.gif"
    seen = []
    runs = run_schedule({"out": str(out), "data_file": str(tmp_path / "d.img"), "frames_dir": str(tmp_path),
                         "retry_delay": 0}, every=0.01, max_runs=2, scheduler="sync", on_result=seen.append)
    assert [r.ok for r in runs] == [True, True] and out.exists()
    first, second = (r.result for r in runs)
    assert first.states["fetch"].state == "Success" and second.states["fetch"].state == "Skipped"
    assert first.path == second.path == str(out)


def test_state_hooks_see_every_step_and_every_remarkable_frame(tmp_path):
    seen = []
    sample = Path(daskgif.sample_path()).read_bytes()
    data = [sample[s.offset:s.offset + s.length] for s in split_bytes(sample)]
    (tmp_path / "d.img").write_bytes(b"\n\n\n\n".join([data[0], b"not an image", data[1]]))
    graph = daskgif.build_graph(url=str(tmp_path / "d.img"), out=str(tmp_path / "c.gif"),
                                data_file=str(tmp_path / "d.img"), on_error="skip", on_state=[seen.append])
    result = graph.compute(scheduler="sync")
    assert all(isinstance(s, daskgif.State) for s in seen)
    steps = [(s.name, s.state) for s in seen if s.index is None]
    assert steps == [("fetch", "Running"), ("fetch", "Skipped"), ("split", "Running"), ("split", "Success"),
                     ("map-frames", "Running"), ("map-frames", "Success"), ("combine", "Running"),
                     ("combine", "Success")]
    frames = [(s.index, s.state) for s in seen if s.index is not None]
    assert frames == [(1, "Skipped")]  # plain successes are counted, not reported one by one
    assert result.states["write-frame"].counts == {"Success": 2, "Skipped": 1}


def test_state_hooks_report_failures_with_their_message(tmp_path, http_server):
    seen = []
    url = http_server.url("/missing.img")
    graph = daskgif.build_graph(url=url, out=str(tmp_path / "c.gif"), data_file=str(tmp_path / "d.img"),
                                frames_dir=str(tmp_path), retry_delay=0, on_state=[seen.append])
    with pytest.raises(daskgif.RunFailed):
        graph.compute(scheduler="threads")
    failed = [s for s in seen if s.name == "fetch" and s.state == "Failed"]
    assert len(failed) == 1 and "404" in failed[0].message and failed[0].index is None


# --- the command line ----------------------------------------------------------------------------------


def daskgif_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "daskgif", *args]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith(".daskgif-"))


def downloading(folder: Path) -> bool:
    """Whether the fetch of the default data file is writing it (its temporary file exists)."""
    return any(folder.glob(".image-data.img.*.part"))


def wait_for(predicate, timeout: float = 60) -> None:
    """Poll until *predicate* holds: an event the test can observe (a request served, a file written)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def sample_bytes() -> bytes:
    return Path(daskgif.sample_path()).read_bytes()


def test_every_with_history_and_notify_survives_a_failed_run(tmp_path, http_server, sample_bytes):
    data_url = http_server.serve("/data.img", sample_bytes)
    hook = http_server.url("/hook")
    proc = subprocess.Popen(
        daskgif_cmd("run", "--every", "2s", "--max-runs", "3", "--history", "h.jsonl", "--notify", hook,
                    "--scheduler", "threads", "--url", data_url, "--force", "--retry-delay", "0", "--json"),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Once run 1 is reported, its data URL answers 404 once: exactly run 2 fails.
        wait_for(lambda: http_server.posts or proc.poll() is not None)
        http_server.fail("/data.img", 404, times=1)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr  # a run failed: status 1 once the schedule ends
    history = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert [(h["run"], h["ok"]) for h in history] == [(1, True), (2, False), (3, True)]
    assert "404" in history[1]["message"] and "fetch" in history[1]["message"]
    assert history[0]["frames"] > 1 and history[0]["states"]["write-frame"] == {"Success": history[0]["frames"]}
    assert history[1]["states"]["fetch"] == {"Failed": 1}
    assert history[0]["parameters"]["url"] == data_url and "storage_options" not in history[0]["parameters"]
    posts = [payload for path, payload in http_server.posts if path == "/hook"]
    assert [(p["run"], p["ok"]) for p in posts] == [(1, True), (2, False), (3, True)]
    assert posts[0]["result"]["states"]["fetch"]["state"] == "Success"
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [(line["run"], line["ok"]) for line in lines] == [(1, True), (2, False), (3, True)]
    assert http_server.hits("/data.img") == 3
    starts = [datetime.fromisoformat(h["start"]).timestamp() for h in history]
    assert starts[2] - starts[0] >= 3.5  # runs 2 s apart, never sooner
    assert leftovers(tmp_path) == []
    table = subprocess.run(daskgif_cmd("history", "h.jsonl"), cwd=tmp_path, capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["start", "duration", "ok", "frames", "out", "message"] and len(rows) == 4
    assert "FAILED" in rows[2] and "404" in rows[2] and "yes" in rows[3]


def test_notify_and_history_for_a_single_run(tmp_path, http_server):
    hook = http_server.url("/hook")
    done = subprocess.run(daskgif_cmd("run", "--scheduler", "sync", "--history", "runs/h.jsonl", "--notify", hook),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Wrote clip.gif") and len(done.stdout.splitlines()) == 1
    assert len((tmp_path / "runs" / "h.jsonl").read_text().splitlines()) == 1
    assert [payload["ok"] for _, payload in http_server.posts] == [True]


@pytest.mark.parametrize("args, message", [
    (["--every", "5x"], "Invalid value for '--every': must be a positive duration"),
    (["--every", "0"], "must be a positive duration such as '24h'"),
    (["--cron", "nightly"], "Invalid value for '--cron': must be a cron expression"),
    (["--cron", "0 0 31 2 *"], "Invalid value for '--cron': must be a cron expression that fires, such as"),
    (["--every", "1s", "--cron", "* * * * *"], "mutually exclusive"),
    (["--max-runs", "2"], "--max-runs needs --every or --cron"),
    (["--every", "1s", "--max-runs", "0"], "0"),
    (["--notify", "file:///tmp/x"], "Invalid value for '--notify': must be an http:// or https:// URL"),
])
def test_bad_schedule_options_exit_2(tmp_path, args, message):
    done = subprocess.run(daskgif_cmd("run", "--scheduler", "sync", *args), cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "clip.gif").exists()


def test_sigterm_between_runs_stops_at_once(tmp_path):
    proc = subprocess.Popen(daskgif_cmd("run", "--every", "1h", "--scheduler", "threads", "--history", "h.jsonl"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    before = []
    try:
        # the signal goes once the wait has begun: the "next run" line is the event to watch for, not the history
        # file (written a moment before the line, so a signal sent on the file could land before the wait starts)
        for line in proc.stderr:
            before.append(line)
            if line.startswith("daskgif: next run (2) at "):
                break
        proc.send_signal(signal.SIGTERM)
        stdout, rest = proc.communicate(timeout=30)  # the wait is an hour: returning at all means it stopped at once
    finally:
        proc.kill()
    stderr = "".join(before) + rest
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    progress = [line for line in stderr.splitlines() if " frames (" in line]  # stderr is no TTY: plain lines
    assert progress and " frames (100%), " in progress[-1]
    waits = [line for line in stderr.splitlines() if line.startswith("daskgif: next run (2) at ")]
    assert len(waits) == 1 and re.search(r" UTC\), in (1 h 0 min|59 min \d+ s)$", waits[0]), stderr
    assert [line for line in stderr.splitlines() if line not in progress and line not in waits] == [
        "daskgif: SIGTERM received: stopping (a second signal aborts at once)",
        "daskgif: stopped by SIGTERM after 1 run(s): no run was in progress"]
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("every", [[], ["--every", "1h"]], ids=["single run", "schedule"])
def test_sigint_during_a_local_run_cancels_it(tmp_path, http_server, sample_bytes, every):
    # Headers and 100 bytes, then 2 s of silence.
    url = http_server.serve("/slow.img", sample_bytes)
    http_server.stall("/slow.img", seconds=2, after_bytes=100)
    proc = subprocess.Popen(daskgif_cmd("run", *every, "--scheduler", "threads", "--url", url,
                                        "--history", "h.jsonl"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The download has begun writing its temporary file: the signal arrives while fetch is running.
        wait_for(lambda: downloading(tmp_path) or proc.poll() is not None)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "stopped by SIGINT after 1 run(s): run 1 was cancelled" in stderr and "Aborted" not in stderr
    # The download under way finished (atomically); no frame was written after the signal, no clip replaced.
    assert not (tmp_path / "clip.gif").exists() and not list(tmp_path.glob("frames/frame_*"))
    assert leftovers(tmp_path) == []
    record = json.loads((tmp_path / "h.jsonl").read_text())
    assert record["ok"] is False and record["cancelled"] is True


@pytest.mark.slow
def test_sigterm_during_a_cluster_run_cancels_it(tmp_path, http_server, sample_bytes):
    url = http_server.serve("/slow.img", sample_bytes)
    http_server.stall("/slow.img", seconds=3, after_bytes=100)
    proc = subprocess.Popen(daskgif_cmd("run", "--every", "1h", "--workers", "1", "--url", url, "--history",
                                        "h.jsonl"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: downloading(tmp_path) or proc.poll() is not None, timeout=120)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM after 1 run(s): run 1 was cancelled" in stderr
    # The fetch that was running finished its atomic write; nothing after it ran; no temporary file is left.
    assert not (tmp_path / "clip.gif").exists() and not list(tmp_path.glob("frames/frame_*.gif"))
    assert leftovers(tmp_path) == []
    record = json.loads((tmp_path / "h.jsonl").read_text())
    assert record["ok"] is False and record["cancelled"] is True
    assert os.listdir(tmp_path)  # the history is there


@pytest.mark.slow
def test_sigterm_while_frames_are_written_leaves_only_whole_files(tmp_path, sample_bytes):
    (tmp_path / "big.img").write_bytes(sample_bytes * 60)
    frames = tmp_path / "frames"
    proc = subprocess.Popen(daskgif_cmd("run", "--every", "1h", "--workers", "2", "--url", "big.img", "--frames-dir",
                                        "frames", "--data-file", "d.img"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: frames.exists() and len(os.listdir(frames)) > 20 or proc.poll() is not None, timeout=120)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "run 1 was cancelled" in stderr
    written = sorted(frames.iterdir())
    # Queued frame tasks were dropped; the ones executing finished: whole GIFs, no temporary file, no clip.gif.
    assert 0 < len(written) < len(split_bytes(sample_bytes * 60))
    assert all(p.name.startswith("frame_") and p.read_bytes()[:6] == b"GIF89a" and p.read_bytes()[-1:] == b";"
               for p in written)
    assert leftovers(tmp_path) == [] and not (tmp_path / "clip.gif").exists()


def test_cron_option_runs_on_fire_times(tmp_path):
    # croniter's optional sixth field counts seconds: a fire time every second keeps the test short.
    done = subprocess.run(daskgif_cmd("run", "--cron", "* * * * * *", "--max-runs", "2", "--scheduler", "sync",
                                      "--json"), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runs = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["run"], r["ok"]) for r in runs] == [(1, True), (2, True)]
    when = r"at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \((\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d UTC\), in \d s"
    # Run 2 waits for its fire time, unless run 1 outlasted the second between them (a loaded machine): then
    # it starts at once, and says so.
    late = r"daskgif: Run 1 took [\d.]+ s, past the next fire time of the schedule \(cron '\* \* \* \* \* \*'\); " \
           r"run 2 starts now, [\d.]+ s late"
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and re.fullmatch(rf"daskgif: next run \(1\) {when}", lines[0]), done.stderr
    assert re.fullmatch(rf"daskgif: next run \(2\) {when}|{late}", lines[1]), done.stderr
    assert runs[1]["started"] > runs[0]["started"]  # fire times themselves are checked on a fake clock above


def test_run_schedule_uses_the_active_client(tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster):
        runs = run_schedule({"out": str(tmp_path / "c.gif"), "data_file": str(tmp_path / "d.img"),
                             "frames_dir": str(tmp_path)}, every=0.01, max_runs=2)
    assert [r.ok for r in runs] == [True, True] and (tmp_path / "c.gif").exists()


def test_the_cli_recycles_its_own_cluster_and_not_one_given_by_address(tmp_path):
    from distributed import Client, LocalCluster

    env = {**os.environ, "DASK_DASKGIF__SCHEDULE__RECYCLE_EVERY": "2"}
    done = subprocess.run(daskgif_cmd("run", "--every", "0.01", "--max-runs", "3", "--workers", "1", "--history",
                                      "h.jsonl"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    links = re.findall(r"Dashboard \(while the cluster is up\): (\S+)", done.stderr)
    assert len(links) == 2 and links[0] != links[1], done.stderr  # a new cluster, and its link, for run 3
    runs = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert [(r["run"], r["ok"]) for r in runs] == [(1, True), (2, True), (3, True)]
    assert not list(tmp_path.glob("*.lock"))

    env["DASK_DASKGIF__SCHEDULE__RECYCLE_EVERY"] = "1"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        before = client.run(os.getpid)
        done = subprocess.run(daskgif_cmd("run", "--every", "0.01", "--max-runs", "2", "--scheduler",
                                          cluster.scheduler_address, "--out", str(tmp_path / "given.gif"),
                                          "--data-file", str(tmp_path / "given.img")),
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert client.run(os.getpid) == before and (tmp_path / "given.gif").exists()


def test_a_renewed_cluster_lets_go_of_the_schedulers_before_it():
    import gc
    import weakref

    from daskgif.ops.cluster import connect

    schedulers = []
    for _ in range(3):
        with connect(workers=1, preload=("daskgif.dashboard",)) as client:
            assert client.submit(sum, [1, 2]).result() == 3
            schedulers.append(weakref.ref(client.cluster.scheduler))
    gc.collect()
    assert [ref() is None for ref in schedulers[:2]] == [True, True]  # with their task groups, spans, logs
    # and the keys the scheduler split, kept by dask's key_split cache (a dozen per run: 4 MB per 1,000 runs)
    from dask.utils import key_split

    assert key_split.cache_info().currsize == 0


def test_a_webhook_that_keeps_a_run_waiting_never_delays_the_next_run(caplog):
    """The hook answers run 1's POST only once run 2 has ended: posted beside the runs, both are delivered."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    run_two_ended = threading.Event()
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["run"])
            run_two_ended.wait(60)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    params = {"data_file": "memory://hook-waits/d.img", "out": "memory://hook-waits/clip.gif"}
    ended = []

    def on_result(run):
        ended.append(run.number)
        if run.number == 2:
            run_two_ended.set()

    try:
        with caplog.at_level(logging.INFO, logger="daskgif.ops.notify"), \
                dask.config.set({"daskgif.notify-timeout": 30, "daskgif.notify-retries": 0}):
            runs = run_schedule(params, every=0.01, max_runs=2, scheduler="sync", on_result=on_result,
                                notify=f"http://127.0.0.1:{server.server_address[1]}/hook")
    finally:
        run_two_ended.set()
        server.shutdown()
    assert [run.ok for run in runs] == [True, True] and ended == [1, 2]
    assert received == [1, 2]  # in run order, every one sent before run_schedule returned
    assert [r.getMessage().split(" (")[0] for r in caplog.records if r.name == "daskgif.ops.notify"] == [
        f"Notification to http://127.0.0.1:{server.server_address[1]}/... delivered"] * 2  # the path may be a secret


def test_a_stopped_schedule_returns_without_waiting_for_its_webhook_and_drops_the_queued_posts(caplog):
    """Run 1's POST hangs at the hook; the schedule is stopped after run 2: it returns at once, run 2's post dropped."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release, received, answered = threading.Event(), [], []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["run"])
            release.wait(120)
            self.send_response(204)
            self.end_headers()
            answered.append(received[-1])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    params = {"data_file": "memory://hook-stop/d.img", "out": "memory://hook-stop/clip.gif"}
    try:
        with caplog.at_level(logging.INFO, logger="daskgif.ops.notify"), \
                dask.config.set({"daskgif.notify-timeout": 60, "daskgif.notify-retries": 0}):
            runs = run_schedule(params, every=0.01, max_runs=3, scheduler="sync", stop=stop,
                                on_result=lambda run: run.number == 2 and stop.set(),
                                notify=f"http://127.0.0.1:{server.server_address[1]}/hook")
            # the post under way is not waited for: unanswered, not yet failed
            returned_while_held = answered == [] and not [r for r in caplog.records
                                                          if r.name == "daskgif.ops.notify"]
    finally:
        release.set()
        server.shutdown()
    assert [run.number for run in runs] == [1, 2] and returned_while_held
    assert received == [1]  # run 2's post was queued behind it, and dropped
