"""``daskgif run`` as a user runs it: a real subprocess, a real cluster, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

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
    assert "Dashboard: http" in done.stderr
    assert f"{SAMPLE_FRAMES} frames" in done.stdout and "clip.gif" in done.stdout
    with Image.open(tmp_path / "clip.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == SAMPLE_FRAMES and gif.info["loop"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "frames", "image-data.img",
                                                          "image-data.img.source.json"]
    assert (tmp_path / "frames" / "frame_00.gif").exists()


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


@pytest.mark.parametrize("args", [["--duration", "-1"], ["--bogus"], ["--workers", "0"], ["--on-error", "x"]])
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
