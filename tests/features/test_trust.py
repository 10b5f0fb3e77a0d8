"""Trust, end to end on real runs: no secret in any output channel, clashing paths refused before any
work, every path parameter as a ``file://`` URL, honest sizes and times, an offline report."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import daskgif
from daskgif.pipeline.graph import build_graph
from daskgif.pipeline.sample import sample_path
from frames import image_data, make_gif

SAMPLE = Path(sample_path()).read_bytes()
SECRETS = ("s3cr3tPW", "s3cr3tTOKEN", "s3cr3tSIG", "s3cr3tCRED")


def cli(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskgif", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked: ...{text[max(0, text.find(secret) - 80):][:160]}..."


def secret_urls(http_server) -> tuple[str, str]:
    """A URL that works and one that fails (404), both full of credentials."""
    http_server.serve("/ok.img", SAMPLE)
    base = http_server.url("/").removeprefix("http://").rstrip("/")
    query = "?X-Amz-Credential=s3cr3tCRED&X-Amz-Signature=s3cr3tSIG"
    return f"http://s3cr3tTOKEN@{base}/ok.img{query}", f"http://alice:p@ss:s3cr3tPW@{base}/missing.img{query}"


def test_no_secret_leaves_in_clear(tmp_path, http_server):
    good, bad = secret_urls(http_server)
    hook = http_server.url("/hook")
    outputs = []
    for url, code in ((good, 0), (bad, 1)):
        for extra in ([], ["--json"]):
            done = cli("-vv", "run", "--scheduler", "threads", "--retries", "1", "--retry-delay", "0", "--force",
                       "--url", url, "--history", "h.jsonl", "--notify", hook, *extra, cwd=tmp_path)
            assert done.returncode == code, done.stderr
            outputs += [done.stdout, done.stderr]
    assert "HTTP 404" in "".join(outputs) and "alice:***@" in "".join(outputs)  # the failing run said why, masked
    history = (tmp_path / "h.jsonl").read_text()
    assert len(history.splitlines()) == 4 and "***" in history
    bodies = json.dumps([payload for _, payload in http_server.posts])
    assert len(http_server.posts) == 4
    assert_no_secret(*outputs, history, bodies, *(p.read_text() for p in tmp_path.glob("*.json")))
    # In Python: the result, its repr, HTML and dict, and the error of a failed run.
    result = build_graph(url=good, data_file=str(tmp_path / "d.img"), out=str(tmp_path / "c.gif")).compute(
        scheduler="sync")
    with pytest.raises(daskgif.RunFailed) as info:
        build_graph(url=bad, data_file=str(tmp_path / "e.img"), out=str(tmp_path / "e.gif"), retries=0).compute(
            scheduler="sync")
    assert_no_secret(repr(result), result._repr_html_(), json.dumps(result.to_dict()), str(info.value),
                     repr(info.value), json.dumps(info.value.result.to_dict()), info.value.result._repr_html_())


def test_the_report_hides_secrets_and_works_offline(tmp_path, http_server):
    good, _ = secret_urls(http_server)
    done = cli("run", "--workers", "1", "--url", good, "--report", "report.html", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "report.html").read_text()
    assert_no_secret(report)
    assert "daskgif run --workers 1 --url" in report  # the calling code is the user's command
    assert not re.search(r"<script[^>]+src=[\"']https?://", report)  # scripts inlined: renders offline
    usage = cli("run", "--scheduler", "sync", "--report", "r.html", cwd=tmp_path)
    assert usage.returncode == 2 and "--report needs a cluster" in usage.stderr and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("clash, message", [
    (["--data-file", "clip.gif"], "out and data_file are the same file"),
    (["--out", "folder.gif"], "is an existing folder"),
    (["--frames-dir", "a-file"], "is an existing file, not a folder"),
    (["--frames-dir", "frames", "--out", "frames/frame_00.gif"], "under a name the run writes or clears there"),
])
def test_clashing_paths_are_usage_errors_before_any_work(tmp_path, http_server, clash, message):
    (tmp_path / "folder.gif").mkdir()
    (tmp_path / "a-file").write_text("mine")
    url = http_server.serve("/d.img", SAMPLE)
    done = cli("run", "--scheduler", "sync", "--url", url, *clash, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert http_server.hits("/d.img") == 0 and (tmp_path / "a-file").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "folder.gif"]


def test_every_path_parameter_takes_a_file_url(tmp_path):
    (tmp_path / "in.img").write_bytes(SAMPLE)
    url = lambda name: (tmp_path / name).as_uri()  # noqa: E731
    done = cli("run", "--scheduler", "sync", "--url", url("in.img"), "--data-file", url("d.img"), "--out",
               url("c.gif"), "--frames-dir", url("fr"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "d.img").read_bytes() == SAMPLE and (tmp_path / "fr" / "frame_00.gif").exists()
    with Image.open(tmp_path / "c.gif") as gif:
        assert gif.n_frames == len(glob.glob(str(tmp_path / "fr" / "frame_*.gif")))


@pytest.mark.parametrize("count", [1, 27, 10_000])
def test_the_reported_size_is_the_size_written(tmp_path, count):
    data = image_data([make_gif(8, 8, seed=i % 50) for i in range(count)])
    (tmp_path / "d.img").write_bytes(data)
    result = build_graph(url=str(tmp_path / "d.img"), data_file=str(tmp_path / "d.img"),
                         out=str(tmp_path / "c.gif")).compute(scheduler="threads")
    assert result.size == (tmp_path / "c.gif").stat().st_size and len(result.frames) == count


def test_summary_and_history_say_the_same_run_time(tmp_path):
    done = cli("run", "--scheduler", "sync", "--history", "h.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    said = float(re.search(r"in (\d+\.\d+) s", done.stdout).group(1))
    recorded = json.loads((tmp_path / "h.jsonl").read_text())["duration"]
    assert abs(said - recorded) <= 0.006


def test_a_new_url_fetches_again_and_frames_of_the_old_run_do_not_mix(tmp_path, http_server):
    first = http_server.serve("/a.img", image_data([make_gif(8, 8, seed=i) for i in range(12)]))
    second = http_server.serve("/b.img", image_data([make_gif(8, 8, seed=i) for i in range(3)]))
    kwargs = {"data_file": str(tmp_path / "d.img"), "out": str(tmp_path / "c.gif")}
    assert len(build_graph(url=first, **kwargs).compute(scheduler="sync").frames) == 12
    result = build_graph(url=second, **kwargs).compute(scheduler="sync")
    assert result.states["fetch"].state == "Success" and len(result.frames) == 3
    assert sorted(os.listdir(tmp_path / "frames")) == [".frames-manifest.json", "frame_00.gif", "frame_01.gif",
                                                        "frame_02.gif"]
    again = build_graph(url=second, **kwargs).compute(scheduler="sync")
    assert again.states["fetch"].state == "Skipped" and http_server.hits("/b.img") == 1


def test_two_runs_on_one_data_file_never_mix(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "daskgif", "run", "--scheduler", "sync", "--out", f"c{i}.gif",
                               "--frames-dir", f"f{i}", "--json"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    if codes == [0, 0]:  # one ended before the other began: the second reused its fetch
        states = sorted(json.loads(out)["states"]["fetch"]["state"] for out, _ in results)
        assert states == ["Skipped", "Success"]
    else:  # they overlapped: the second failed at once, naming the run that holds the data file
        assert codes == [0, 1], results
        said = next(o + e for (o, e), p in zip(results, procs) if p.returncode == 1)
        assert "image-data.img.lock is held by run" in said, said
    assert not (tmp_path / "image-data.img.lock").exists()
