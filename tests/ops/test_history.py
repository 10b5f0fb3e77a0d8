"""Run history: JSON lines in local and object-store files, and the ``daskgif history`` table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from daskgif.ops.history import append_run, format_history, read_history


def record(run: int, ok: bool = True, **extra) -> dict:
    return {"run": run, "start": f"2024-01-0{run}T02:00:00.000+00:00", "end": f"2024-01-0{run}T02:00:03.000+00:00",
            "duration": 3.0, "ok": ok, "cancelled": False, "out": "clip.gif", "frames": 27 if ok else None,
            "states": {"fetch": {"Success" if ok else "Failed": 1}}, "message": "" if ok else "HTTP 404",
            "parameters": {"url": "http://x"}, **extra}


def test_append_and_read_local(tmp_path):
    path = str(tmp_path / "sub" / "h.jsonl")
    for run in (1, 2, 3):
        append_run(path, record(run, ok=run != 2))
    lines = (tmp_path / "sub" / "h.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["ok"] is False
    assert [r["run"] for r in read_history(path)] == [1, 2, 3]
    assert [r["run"] for r in read_history(path, last=2)] == [2, 3]
    assert read_history(path, last=0) == []


def test_memory_filesystem(tmp_path):
    path = "memory://daskgif-history-test/h.jsonl"
    append_run(path, record(1))
    append_run(path, record(2))
    assert [r["run"] for r in read_history(path)] == [1, 2]


def test_object_store_is_rewritten_atomically(s3_server, s3_bucket):
    path = f"{s3_bucket}/runs/h.jsonl"
    for run in (1, 2, 3):
        append_run(path, record(run), storage_options=s3_server.storage_options)
    assert [r["run"] for r in read_history(path, storage_options=s3_server.storage_options)] == [1, 2, 3]


def test_a_cut_line_is_skipped(tmp_path, caplog):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(record(1)) + "\n" + '{"run": 2, "sta\n[1, 2]\n\n')
    append_run(str(path), record(3))
    assert [r["run"] for r in read_history(str(path))] == [1, 3]
    assert [r.message for r in caplog.records] == [f"Skipped 2 line(s) of {path} that are no run record (the first: "
                                                   "line 2)"]


def test_bad_last(tmp_path):
    with pytest.raises(ValueError, match="last must be a non-negative integer"):
        read_history(str(tmp_path / "h.jsonl"), last=-1)


def test_table_lines_up():
    table = format_history([record(1), record(2, ok=False), record(3, cancelled=True, ok=False)]).splitlines()
    assert table[0].split() == ["start", "duration", "ok", "frames", "out", "message"]
    assert "FAILED" in table[2] and "HTTP 404" in table[2] and "cancelled" in table[3]
    assert len({line.index("clip.gif") for line in table[1:]}) == 1
    assert format_history([]).split() == ["start", "duration", "ok", "frames", "out", "message"]


def test_history_command(tmp_path):
    path = tmp_path / "h.jsonl"
    for run in range(1, 6):
        append_run(str(path), record(run))
    done = subprocess.run([sys.executable, "-m", "daskgif", "history", str(path), "--last", "2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3 and "2024-01-05 02:00:00" in done.stdout
    done = subprocess.run([sys.executable, "-m", "daskgif", "history", str(path), "--json", "--last", "1"],
                          capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout)["run"] == 5
    missing = subprocess.run([sys.executable, "-m", "daskgif", "history", str(tmp_path / "none.jsonl")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no history at" in missing.stderr


@pytest.mark.parametrize("url", ["http://s3cr3tTOKEN@host/x.img", "http://alice:s3cr3t@TOKEN@host/x.img",
                                 "https://b.s3.amazonaws.com/x.img?X-Amz-Signature=s3cr3tTOKEN"])
def test_the_history_line_never_holds_a_secret(tmp_path, url):
    path = str(tmp_path / "h.jsonl")
    append_run(path, record(1, ok=False, message=f"cannot fetch {url}: HTTP 404", parameters={"url": url},
                            error=OSError(f"url=URL('{url}')")))
    text = (tmp_path / "h.jsonl").read_text()
    assert "s3cr3t" not in text and "TOKEN" not in text and text.count("***") == 3
    assert "s3cr3t" not in format_history(read_history(path))


def test_the_table_masks_lines_written_before_masking(tmp_path):
    path = tmp_path / "h.jsonl"
    old = record(1, ok=False, message="cannot fetch http://s3cr3tTOKEN@h/x", out="s3://k:pw@b/o.gif")
    path.write_text(json.dumps(old))
    table = format_history(read_history(str(path)))
    assert "s3cr3tTOKEN" not in table and ":pw@" not in table and "http://***@h/x" in table


def history_cmd(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskgif", "history", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_history_skips_binary_lines_with_one_warning(tmp_path):
    path = tmp_path / "h.jsonl"
    append_run(str(path), record(1))
    with open(path, "ab") as f:
        f.write(b"\xff\xfe\x00garbage\n" + bytes(range(11, 256)) + b"\n")  # not UTF-8
        f.write(b"[" * 100_000 + b"\n" + b"x" * 3_000_000 + b"\n")  # nested too deeply; too long for a record
    append_run(str(path), record(2))
    done = history_cmd(str(path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["run"] for line in done.stdout.splitlines()] == [1, 2]
    assert done.stderr.splitlines() == [f"daskgif: Skipped 4 line(s) of {path} that are no run record (the first: "
                                        "line 2)"]


@pytest.mark.parametrize("content", [
    bytes(range(256)) * 4,  # binary, not UTF-8
    b"GIF89a\x01\x00\x01\x00\x00\x00\x00;\n\n\n\nGIF89a",  # an image-data file
    b'{"name": "daskgif"}\n{"version": 1}\n',  # JSON lines, but no run
])
def test_history_refuses_a_file_that_is_no_history_in_one_line(tmp_path, content):
    (tmp_path / "clip.gif").write_bytes(content)
    done = history_cmd("clip.gif", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()] and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: clip.gif is not a history file: none of its ")


def test_history_of_an_empty_file_is_an_empty_table(tmp_path):
    (tmp_path / "h.jsonl").write_bytes(b"")
    done = history_cmd("h.jsonl", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.split() == ["start", "duration", "ok", "frames", "out", "message"]


@pytest.mark.parametrize("make, kind", [(lambda p: os.mkfifo(p), "a fifo"), (lambda p: os.mkdir(p), "a folder"),
                                        (lambda p: os.symlink("/dev/zero", p), "a character device")])
def test_history_refuses_what_is_no_regular_file_without_waiting(tmp_path, make, kind):
    make(tmp_path / "h.jsonl")
    done = history_cmd("h.jsonl", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: cannot read the history h.jsonl: is {kind}, not a history file"
