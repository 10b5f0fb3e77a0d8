"""``daskgif run`` as a user runs it: a real subprocess, a real cluster, real files."""

from __future__ import annotations

import json
import os
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
                                  ["--keep-dashboard", "--scheduler", "threads"], ["--watch", "in", "--url", "a.img"],
                                  ["--since-start"]])
def test_bad_usage_exits_2(tmp_path, args):
    done = daskgif("run", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert not (tmp_path / "clip.gif").exists()


def test_a_picture_of_the_pipeline_shows_no_credentials(tmp_path):
    done = daskgif("graph", "--url", "http://bob:s3cr3tpw@127.0.0.1:9/a.img?token=T0PSECRET&auth=AUTHV4LUE",
                   "--picture", "g.dot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    drawn = (tmp_path / "g.dot").read_text()
    assert "bob:***@127.0.0.1:9/a.img?token=***&auth=***" in drawn
    assert not any(secret in drawn + done.stderr for secret in ("s3cr3tpw", "T0PSECRET", "AUTHV4LUE"))


def test_graph_draws_one_pipeline(tmp_path):
    done = daskgif("graph", "--url", "a.img", "--url", "b.img", cwd=tmp_path)
    assert done.returncode == 2 and "graph draws one pipeline: give one --url" in done.stderr


def test_storage_options_frames_per_task_and_delimiter_options(tmp_path):
    frames = [make_gif(8, 8, seed=i) for i in range(5)]
    (tmp_path / "crlf.img").write_bytes(b"\r\n\r\n".join(frames))
    done = daskgif("run", "--scheduler", "sync", "--json", "--url", "crlf.img", "--delimiter", "\\r\\n\\r\\n",
                   "--frames-per-task", "2", "--storage-options", '{"auto_mkdir": true}', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["frames"]) == 5
    for args, words in [(["--storage-options", "[1]"], "(as text: a JSON object), got a str (not shown"),
                        (["--storage-options", '{"secret": "s0secret"'], "got a str (not shown: it may hold "
                                                                          "credentials)"),
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
    # an input under the current folder is named as the user would (in/a.img), not as the pattern expands it
    assert lines[0] == "in/a.img: Wrote a.gif (164,866 bytes): all 32 frames written in " + lines[0].split(" in ")[-1]
    assert lines[1].startswith("in/b.img: Wrote b.gif")
    assert re.fullmatch(r"3 inputs: 2 written, 1 failed \(batch \d{8}-\d{6}-[0-9a-f]{4}\)", lines[-1]), lines[-1]
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
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.img").write_bytes((tmp_path / "in" / "a.img").read_bytes())
    done = daskgif("run", "--url", "in/a.img", "--url", "other/a.img", "--scheduler", "sync", cwd=tmp_path)
    assert done.returncode == 2 and "would both write out 'a.gif'" in done.stderr
    assert not list(tmp_path.glob("*.gif")) and not (tmp_path / "data").exists()


def test_repeated_urls_are_one_batch_that_history_and_webhook_tell_apart(tmp_path, http_server):
    many_inputs(tmp_path)
    done = daskgif("run", "--url", "in/a.img", "--url", "in/[ab].img", "--url", str(tmp_path / "in" / "b.img"),
                   "--scheduler", "sync", "--json", "--history", "h.jsonl", "--notify", http_server.url("/hook"),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    batch = found["batch"]
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", batch) and found["inputs"] == 2  # an input named twice runs once
    assert [(Path(r["url"]).name, r["batch"], r["ok"]) for r in found["runs"]] == [("a.img", batch, True),
                                                                                   ("b.img", batch, True)]
    history = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert [(Path(r["parameters"]["url"]).name, r["batch"]) for r in history] == [("a.img", batch), ("b.img", batch)]
    posted = sorted((Path(body["parameters"]["url"]).name, body["batch"], body["result"]["ok"])
                    for path, body in http_server.posts if path == "/hook")
    assert posted == [("a.img", batch, True), ("b.img", batch, True)]
    # One --url that is no pattern is a run of its own, as ever: no batch.
    done = daskgif("run", "--url", "in/a.img", "--scheduler", "sync", "--json", "--history", "one.jsonl", cwd=tmp_path)
    assert done.returncode == 0 and {"batch", "runs"}.isdisjoint(json.loads(done.stdout))
    assert "batch" not in json.loads((tmp_path / "one.jsonl").read_text())


def test_ctrl_c_cancels_the_inputs_of_a_batch_that_have_not_ended(tmp_path, http_server):
    sample = Path(sample_path()).read_bytes()
    urls = [http_server.serve(f"/{name}.img", sample) for name in ("mon", "tue")]
    for name in ("mon", "tue"):
        http_server.stall(f"/{name}.img", seconds=5, after_bytes=100)
    proc = start("run", "--url", urls[0], "--url", urls[1], "--workers", "1", "--threads-per-worker", "2",
                 cwd=tmp_path)
    try:
        lines = Lines(proc)
        deadline = time.monotonic() + 120
        while not (http_server.hits("/mon.img") and http_server.hits("/tue.img")):  # both in their stall
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        lines.until(lambda line: line.startswith("daskgif: stopped by SIGINT after 2 run(s): run 1 was cancelled"))
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, lines.seen
    assert [line.rsplit("/", 1)[1] for line in lines.seen if "cancelled by a stop request" in line] == \
        ["mon.img: cancelled by a stop request", "tue.img: cancelled by a stop request"]
    assert any(line.startswith("2 inputs: 0 written, 0 failed, 2 cancelled (batch ") for line in lines.seen)
    assert not list(tmp_path.glob("*.gif")) and not list(tmp_path.rglob("*.lock"))


def put(path: Path, data: bytes) -> None:
    """Write *path* whole at once (a rename), so that no listing sees half of it."""
    staged = path.parent.parent / f".{path.name}.part"
    staged.write_bytes(data)
    os.replace(staged, path)


def test_watch_runs_new_and_changed_inputs_as_they_come_until_ctrl_c(tmp_path):
    sample = Path(sample_path()).read_bytes()
    (tmp_path / "in").mkdir()
    put(tmp_path / "in" / "a.img", sample)
    proc = start("run", "--watch", "in", "--every", "0.2", "--scheduler", "sync", "--history", "logs/h.jsonl",
                 cwd=tmp_path)
    try:
        lines = Lines(proc)
        lines.until(lambda line: line.startswith("1 input: 1 written"))
        put(tmp_path / "in" / "b.img", sample)
        put(tmp_path / "in" / "c.img", b"junk\n\n\n\n")
        lines.until(lambda line: "c.img: Error: task 'split' failed" in line)
        lines.until(lambda line: "c.img: Error: task 'split' failed" in line)  # a failed input is tried again
        put(tmp_path / "in" / "c.img", sample)  # ... and, once it changed, fetched anew
        lines.until(lambda line: "c.img: Wrote c.gif" in line)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, lines.seen
    assert lines.seen[0].startswith("daskgif: watching in; what it has seen is kept in logs/.daskgif-watch-")
    assert sum("b.img: Wrote b.gif" in line for line in lines.seen) == 1
    history = [json.loads(line) for line in (tmp_path / "logs" / "h.jsonl").read_text().splitlines()]
    assert [Path(r["parameters"]["url"]).name for r in history if r["ok"]] == ["a.img", "b.img", "c.img"]
    assert all(r["batch"] for r in history) and len({r["batch"] for r in history}) == len({r["run"] for r in history})
    seen = json.loads(next((tmp_path / "logs").glob(".daskgif-watch-*.json")).read_text())
    assert sorted(Path(url).name for url in seen) == ["a.img", "b.img", "c.img"]


def test_a_restarted_watch_runs_only_what_it_has_not_seen(tmp_path):
    sample = Path(sample_path()).read_bytes()
    (tmp_path / "in").mkdir()
    put(tmp_path / "in" / "a.img", sample)
    watch = ("run", "--watch", "in/*.img", "--every", "0.2", "--scheduler", "sync", "--max-runs", "1")
    assert "a.img: Wrote a.gif" in daskgif(*watch, cwd=tmp_path).stdout
    put(tmp_path / "in" / "b.img", sample)
    done = daskgif(*watch, cwd=tmp_path)
    assert done.returncode == 0 and [line.split(": ")[0].rsplit("/")[-1] for line in done.stdout.splitlines()
                                     if ": Wrote" in line] == ["b.img"]
    put(tmp_path / "in" / "c.img", sample)  # there at the start: with --since-start, seen already
    proc = start(*watch, "--since-start", cwd=tmp_path)
    try:
        state = next(tmp_path.glob(".daskgif-watch-*.json"))
        deadline = time.monotonic() + 120
        while "c.img" not in state.read_text():  # the first listing is remembered
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        put(tmp_path / "in" / "d.img", sample)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "d.img: Wrote d.gif" in out and "c.img" not in out


def test_fail_fast_on_a_cluster_cancels_the_rest_and_leaves_no_lock(tmp_path):
    many_inputs(tmp_path)
    (tmp_path / "in" / "b.img").write_bytes(b"junk\n\n\n\n")  # fails at once, while a and c run
    done = daskgif("run", "--url", "in/*.img", "--workers", "1", "--fail-fast", cwd=tmp_path, timeout=300)
    assert done.returncode == 1 and "Exception ignored" not in done.stderr, done.stderr
    total = done.stdout.splitlines()[-1]
    assert total.startswith("3 inputs: ") and " 1 failed" in total, done.stdout
    assert not list(tmp_path.rglob("*.lock")), sorted(map(str, tmp_path.rglob("*.lock")))
