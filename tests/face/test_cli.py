"""``daskgif run`` as a user runs it: a real subprocess, a real cluster, real files."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from daskgif.pipeline.graph import build_graph
from daskgif.pipeline.sample import sample_path
from daskgif.gif.split import split_bytes
from frames import make_gif

SAMPLE_FRAMES = len(split_bytes(Path(sample_path()).read_bytes()))


def daskgif(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskgif", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_new_user_runs_it_with_no_options(tmp_path):
    done = daskgif("run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Dashboard (while the run runs): http" in done.stderr and "  daskgif runs: http" in done.stderr
    assert f"{SAMPLE_FRAMES} frames" in done.stdout and "clip.gif" in done.stdout
    with Image.open(tmp_path / "clip.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == SAMPLE_FRAMES and gif.info["loop"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "frames", "image-data.img",
                                                          "image-data.img.source.json"]
    assert (tmp_path / "frames" / "frame_00.gif").exists()
    # The README lists every file a run leaves (frames by their first names) and the locks it holds while it runs.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    left = {p.name for p in tmp_path.rglob("*") if not re.fullmatch(r"frame_(?!0[01]\.)\d+\.gif", p.name)}
    locks = set(build_graph().params.lease.paths)
    assert locks == {"image-data.img.lock", "frames.lock", "clip.gif.lock"}
    assert [name for name in sorted(left | locks) if f"`{name}`" not in readme and f"`{name}/`" not in readme] == []


def test_json_output(tmp_path):
    done = daskgif("run", "--scheduler", "sync", "--json", "--duration", "40", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["out"] == "clip.gif"
    assert len(result["frames"]) == SAMPLE_FRAMES
    assert result["states"]["fetch"]["state"] == "Success"
    assert result["states"]["write-frame"]["counts"] == {"Success": SAMPLE_FRAMES}
    assert set(result) >= {"ok", "out", "size", "frames", "states", "run", "cancelled", "message", "duration"}
    assert done.stderr == ""


def test_failed_run_exits_1_naming_the_task(tmp_path, http_server):
    url = http_server.url("/nothing-here.img")
    done = daskgif("run", "--scheduler", "threads", "--url", url, "--json", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr == ""
    result = json.loads(done.stdout)
    assert result["ok"] is False and "'fetch'" in result["message"] and url in result["message"]
    assert "404" in result["message"] and result["states"]["fetch"]["state"] == "Failed"
    plain = daskgif("run", "--scheduler", "threads", "--url", url, cwd=tmp_path)
    assert plain.returncode == 1 and plain.stdout == ""
    assert plain.stderr.splitlines() == [f"Error: {result['message']}"]
    assert not (tmp_path / "clip.gif").exists()


@pytest.mark.parametrize("args", [["--duration", "-1"], ["--bogus"], ["--workers", "0"], ["--on-error", "x"],
                                  ["--keep-dashboard", "--scheduler", "threads"]])
def test_bad_usage_exits_2(tmp_path, args):
    done = daskgif("run", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert not (tmp_path / "clip.gif").exists()


def test_storage_options_frames_per_task_and_delimiter_options(tmp_path):
    frames = [make_gif(8, 8, seed=i) for i in range(5)]
    (tmp_path / "crlf.img").write_bytes(b"\r\n\r\n".join(frames))
    done = daskgif("run", "--scheduler", "sync", "--json", "--url", "crlf.img", "--delimiter", "\\r\\n\\r\\n",
                   "--frames-per-task", "2", "--storage-options", '{"auto_mkdir": true}', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["frames"]) == 5
    for args, words in [(["--storage-options", "[1]"], "(as text: a JSON object), got '[1]'"),
                        (["--storage-options", "{bad"], "(as text: a JSON object), got '{bad'"),
                        (["--frames-per-task", "0"], "'auto' or a positive integer"),
                        (["--cron-tz", "UTC"], "--cron-tz needs --cron"),
                        (["--cron", "0 2 * * *", "--cron-tz", "Mars/Base"], "IANA time zone")]:
        bad = daskgif("run", "--scheduler", "sync", *args, cwd=tmp_path)
        assert bad.returncode == 2 and words in bad.stderr, (args, bad.stderr)


# --- links: each one printed answers while it is printed ------------------------------------------------------

LINK = re.compile(r"https?://\S+")


class Lines:
    """The lines a process prints (stdout and stderr merged), read in a thread as they come."""

    def __init__(self, proc: subprocess.Popen):
        self.seen: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, predicate, timeout: float = 120) -> list[str]:
        """Read lines up to the first one *predicate* accepts (the process must not end before); return them."""
        read = []
        while True:
            line = self._queue.get(timeout=timeout)
            assert line is not None, f"the process ended first: {self.seen}"
            self.seen.append(line)
            read.append(line)
            if predicate(line):
                return read


def links(lines: list[str]) -> list[str]:
    return [link for line in lines for link in LINK.findall(line)]


def answers(link: str) -> int:
    with urllib.request.urlopen(link, timeout=30) as response:
        return response.status


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "daskgif", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_keep_dashboard_serves_every_printed_link_until_ctrl_c(tmp_path):
    proc = start("run", "--workers", "1", "--keep-dashboard", cwd=tmp_path)
    try:
        lines = Lines(proc)
        printed = []
        for line in lines.until(lambda line: line.startswith("Wrote ")):
            for link in LINK.findall(line):  # at the moment it is printed
                assert answers(link) == 200, link
                printed.append(link)
        assert [line for line in lines.seen if "http" in line][0].startswith(
            "Dashboard (kept up after the run(s) until Ctrl-C or SIGTERM): http")
        assert [p.rsplit("/", 1)[1] for p in printed] == ["status", "daskgif"]
        lines.until(lambda line: "the dashboard stays up until Ctrl-C or SIGTERM" in line)
        assert all(answers(link) == 200 for link in printed)  # the run is over: the pages still serve
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, lines.seen  # the run's status, not 130: the signal only closed the dashboard
    assert (tmp_path / "clip.gif").exists()


def test_a_link_printed_without_keep_dashboard_answers_while_the_run_runs(tmp_path, http_server):
    url = http_server.serve("/slow.img", Path(sample_path()).read_bytes())
    http_server.stall("/slow.img", seconds=5, after_bytes=100)  # the run lasts at least this long
    proc = start("run", "--workers", "1", "--url", url, cwd=tmp_path)
    try:
        lines = Lines(proc)
        printed = links(lines.until(lambda line: "daskgif runs:" in line))
        assert lines.seen[0].startswith("Dashboard (while the run runs): http")
        deadline = time.monotonic() + 120
        while not http_server.hits("/slow.img"):  # fetch has started: the run runs
            assert proc.poll() is None and time.monotonic() < deadline, lines.seen
            time.sleep(0.02)
        assert [answers(link) for link in printed] == [200, 200]
        assert not (tmp_path / "clip.gif").exists()  # ... and still ran while both pages answered
        lines.until(lambda line: line.startswith("Wrote "))
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, lines.seen


def test_on_a_running_scheduler_the_link_is_the_schedulers(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", dashboard_address=":0",
                      scheduler_kwargs={"preload": ["daskgif.dashboard"]}) as cluster:
        proc = start("run", "--scheduler", cluster.scheduler_address, cwd=tmp_path)
        try:
            lines = Lines(proc)
            printed = links(lines.until(lambda line: "daskgif runs:" in line))
            assert lines.seen[0] == f"Dashboard: {cluster.dashboard_link}"
            assert [answers(link) for link in printed] == [200, 200]
            lines.until(lambda line: line.startswith("Wrote "))
            proc.wait(timeout=120)
        finally:
            proc.kill()
        assert proc.returncode == 0, lines.seen


# --- what the summary and the help say ----------------------------------------------------------------------

def test_the_summary_gives_every_count():
    from daskgif.cli import summary

    result = SimpleNamespace(
        path="clip.gif", size=1000, frames_written=3, frames_in=3, reused=0, skipped_frames=lambda: [],
        states={"fetch": object(), "check": object(), "write-frame": {}},
        counts=lambda: {"fetch": {"Skipped": 1}, "check": {"Success": 29, "Skipped": 1},
                        "write-frame": {"Success": 3}})
    line = summary(SimpleNamespace(result=result, duration=0.5))
    assert line == ("Wrote clip.gif (1,000 bytes): all 3 frames written in 0.50 s "
                    "(fetch: Skipped; check: 29 Success, 1 Skipped)")


def test_help_is_plain_text():
    from click.testing import CliRunner

    from daskgif.cli import main

    for args in ([], *([name] for name in main.commands)):
        done = CliRunner().invoke(main, [*args, "--help"])
        assert done.exit_code == 0 and "``" not in done.output, (args, done.output)
    assert "e.g. every: 24h" in CliRunner().invoke(main, ["run", "--help"]).output
    assert "``" in main.commands["run"].help  # the docs, built from the same text, keep their literals


# --- Many inputs: daskgif run --url 'PATTERN' ----------------------------------------------------------

def many_inputs(folder: Path) -> None:
    from daskgif import sample_path

    (folder / "in").mkdir()
    for name in ("a", "b"):
        (folder / "in" / f"{name}.img").write_bytes(Path(sample_path()).read_bytes())
    (folder / "in" / "c.img").write_bytes(b"junk\n\n\n\n")


def test_a_url_pattern_writes_one_clip_per_input_and_says_each(tmp_path):
    many_inputs(tmp_path)
    done = daskgif("run", "--url", "in/*.img", "--workers", "2", cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr  # one input failed; the others are written
    lines = done.stdout.splitlines()
    assert lines[0].endswith("in/a.img: Wrote a.gif (164,866 bytes): all 32 frames written in " + lines[0].split(" in ")[-1])
    assert "in/b.img: Wrote b.gif" in lines[1] and lines[-1] == "3 inputs: 2 written, 1 failed"
    assert "in/c.img: Error: task 'split' failed" in done.stderr
    assert (tmp_path / "a.gif").exists() and (tmp_path / "b.gif").exists() and not (tmp_path / "c.gif").exists()
    assert sorted(p.name for p in (tmp_path / "frames").iterdir() if p.is_dir()) == ["a", "b"]  # a folder each
    assert not list(tmp_path.rglob("*.lock"))  # every lease ended with the batch, the failed input's too


def test_a_url_pattern_as_json_with_fail_fast(tmp_path):
    many_inputs(tmp_path)
    (tmp_path / "in" / "d.img").write_bytes((tmp_path / "in" / "a.img").read_bytes())
    done = daskgif("run", "--url", "in/*.img", "--scheduler", "sync", "--json", "--fail-fast", cwd=tmp_path)
    found = json.loads(done.stdout)
    assert done.returncode == 1 and found["ok"] is False and (found["failed"], found["cancelled"]) == (1, 1)
    assert [(Path(r["url"]).name, r["ok"], r["cancelled"]) for r in found["runs"]] == \
        [("a.img", True, False), ("b.img", True, False), ("c.img", False, False), ("d.img", False, True)]
    assert found["runs"][3]["message"].endswith("in/c.img failed first (fail_fast)")
    assert not (tmp_path / "d.gif").exists() and not list(tmp_path.rglob("*.lock"))


def test_inputs_that_would_share_an_output_are_a_usage_error(tmp_path):
    many_inputs(tmp_path)
    done = daskgif("run", "--url", "in/*.img", "--out", "clip.gif", "--scheduler", "sync", cwd=tmp_path)
    assert done.returncode == 2 and "would both write out 'clip.gif'" in done.stderr
    assert not (tmp_path / "clip.gif").exists() and not (tmp_path / "data").exists()


def test_fail_fast_on_a_cluster_cancels_the_rest_and_leaves_no_lock(tmp_path):
    many_inputs(tmp_path)
    (tmp_path / "in" / "b.img").write_bytes(b"junk\n\n\n\n")  # fails at once, while a and c run
    done = daskgif("run", "--url", "in/*.img", "--workers", "1", "--fail-fast", cwd=tmp_path, timeout=300)
    assert done.returncode == 1 and "Exception ignored" not in done.stderr, done.stderr
    total = done.stdout.splitlines()[-1]
    assert total.startswith("3 inputs: ") and " 1 failed" in total, done.stdout
    assert not list(tmp_path.rglob("*.lock")), sorted(map(str, tmp_path.rglob("*.lock")))
