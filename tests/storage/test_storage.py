"""Tests of daskgif.storage: fetching, atomic writes and span reads, against real servers."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

import fsspec
import pytest
from fsspec.core import url_to_fs

from daskgif.errors import Cancelled, FetchError, LockHeld
from daskgif.storage import (
    Lease,
    atomic_write,
    fetch_file,
    fetch_needed,
    frame_name,
    join_path,
    open_input,
    read_source,
    read_span,
    remove_dead_uploads,
    remove_stale_parts,
    write_bytes,
)
from daskgif.storage.fetch import url_digest
from daskgif.storage.paths import UPLOAD_NAME, host_name, part_name

BODY = bytes(range(256)) * 64 + b"\n\n\n\n" * 10  # 16 KiB + a little


def exists(path: str, storage_options: dict | None = None) -> bool:
    fs, p = url_to_fs(path, **(storage_options or {}))
    return fs.exists(p)


def leftovers(directory) -> list[str]:
    """Names in *directory*, temporary files included."""
    return sorted(os.listdir(directory))


def test_fetch_http_byte_identical(http_server, tmp_path):
    url = http_server.serve("/data.img", BODY)
    data_file = tmp_path / "sub" / "data.img"
    n = fetch_file(url, str(data_file), chunk_size=1000)
    assert n == len(BODY)
    assert data_file.read_bytes() == BODY
    assert leftovers(data_file.parent) == ["data.img", "data.img.source.json"]
    assert http_server.hits("/data.img") == 1
    assert http_server.hits("/data.img", "HEAD") == 0


def test_fetch_http_without_content_length(http_server, tmp_path):
    url = http_server.serve("/data.img", BODY, content_length=False)
    assert fetch_file(url, str(tmp_path / "d.img")) == len(BODY)
    assert (tmp_path / "d.img").read_bytes() == BODY


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_fetch_http_server_error_is_transient(http_server, tmp_path, status):
    url = http_server.fail("/data.img", status, times=1)
    http_server.serve("/data.img", BODY)
    http_server.fail("/data.img", status, times=1)
    with pytest.raises(FetchError) as info:
        fetch_file(url, str(tmp_path / "data.img"))
    assert info.value.transient is True
    assert f"HTTP {status}" in str(info.value)
    assert url in str(info.value)
    assert leftovers(tmp_path) == []
    # One failed request per attempt: the next attempt gets the body.
    assert http_server.hits("/data.img") == 1
    assert fetch_file(url, str(tmp_path / "data.img")) == len(BODY)


@pytest.mark.parametrize("status", [404, 403, 410, 400])
def test_fetch_http_client_error_is_permanent(http_server, tmp_path, status):
    url = http_server.fail("/data.img", status, times=1)
    with pytest.raises(FetchError) as info:
        fetch_file(url, str(tmp_path / "data.img"))
    assert info.value.transient is False
    assert info.value.url == url
    assert url in str(info.value) and f"HTTP {status}" in str(info.value)
    assert leftovers(tmp_path) == []


def test_fetch_http_404_message(http_server, tmp_path):
    url = http_server.url("/missing.img")
    with pytest.raises(FetchError, match="HTTP 404 Not Found") as info:
        fetch_file(url, str(tmp_path / "data.img"))
    assert str(info.value) == f"cannot fetch {url}: HTTP 404 Not Found"
    assert isinstance(info.value, OSError)
    assert pickle.loads(pickle.dumps(info.value)).transient is False


@pytest.mark.parametrize("content_length", [True, False], ids=["sized", "streamed"])
@pytest.mark.parametrize("after_bytes", [0, 100, 5000])
def test_fetch_connection_reset_is_transient(http_server, tmp_path, content_length, after_bytes):
    http_server.serve("/data.img", BODY, content_length=content_length)
    url = http_server.reset("/data.img", after_bytes=after_bytes)
    target = tmp_path / "data.img"
    with pytest.raises(FetchError) as info:
        fetch_file(url, str(target), chunk_size=1000)
    assert info.value.transient is True
    if not content_length:  # aiohttp reads the reset as the end of a body without a length: the trace tells
        assert f"connection lost after {after_bytes} bytes, before the end of the body" in str(info.value)
    assert leftovers(tmp_path) == []
    assert fetch_file(url, str(target)) == len(BODY)  # reset only once


@pytest.mark.parametrize("kind", ["fifo", "character device"])
def test_a_source_that_is_no_regular_file_is_refused_before_it_is_opened(tmp_path, kind):
    source = tmp_path / "in.img"
    if kind == "fifo":
        os.mkfifo(source)  # opening it would wait for a writer for good
    else:
        source.symlink_to("/dev/zero")  # endless bytes
    target = tmp_path / "d.img"
    with pytest.raises(FetchError) as info:
        fetch_file(str(source), str(target))
    assert str(info.value) == f"cannot fetch {source}: is a {kind}, not a regular file"
    assert info.value.transient is False and not target.exists() and leftovers(tmp_path) == ["in.img"]


def test_fetch_connection_refused_is_transient(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError) as info:
        fetch_file(f"http://127.0.0.1:{port}/x.img", str(tmp_path / "x.img"), timeout=5)
    assert info.value.transient is True
    assert leftovers(tmp_path) == []


def test_fetch_stall_times_out(http_server, tmp_path):
    http_server.serve("/slow.img", BODY)
    url = http_server.stall("/slow.img", seconds=60, after_bytes=100)
    with pytest.raises(FetchError, match="timed out") as info:
        fetch_file(url, str(tmp_path / "slow.img"), timeout=1)
    assert info.value.transient is True
    assert leftovers(tmp_path) == []


def test_fetch_max_bytes(http_server, tmp_path):
    url = http_server.serve("/big.img", BODY, content_length=False)
    with pytest.raises(FetchError, match=r"larger than max_bytes=1000\b") as info:
        fetch_file(url, str(tmp_path / "big.img"), max_bytes=1000, chunk_size=300)
    assert info.value.transient is False
    assert leftovers(tmp_path) == []
    assert fetch_file(url, str(tmp_path / "big.img"), max_bytes=len(BODY)) == len(BODY)


def test_fetch_protocol_not_allowed_before_any_io(http_server, tmp_path):
    url = http_server.serve("/data.img", BODY)
    allowed = ["file", "https"]
    for bad in [url, "ftp://127.0.0.1/x", "simplecache::" + url]:
        with pytest.raises(FetchError, match=r"protocol '\w+' is not allowed") as info:
            fetch_file(bad, str(tmp_path / "d.img"), allowed_protocols=allowed)
        assert "daskgif.allowed-protocols: file, https" in str(info.value)
        assert info.value.transient is False
    assert http_server.requests == []
    assert fetch_file(url, str(tmp_path / "d.img"), allowed_protocols=["http"]) == len(BODY)


@pytest.mark.parametrize("url", ["", None, 42, "nosuchproto://x/y", "http://"])
def test_fetch_bad_url_is_permanent(tmp_path, url):
    with pytest.raises(FetchError) as info:
        fetch_file(url, str(tmp_path / "d.img"), timeout=5)
    assert info.value.transient is False
    assert leftovers(tmp_path) == []


def test_fetch_local_and_missing(tmp_path):
    src = tmp_path / "src.img"
    src.write_bytes(BODY)
    assert fetch_file(str(src), str(tmp_path / "a.img"), chunk_size=7) == len(BODY)
    assert fetch_file(f"file://{src}", str(tmp_path / "b.img")) == len(BODY)
    assert (tmp_path / "b.img").read_bytes() == BODY
    with pytest.raises(FetchError, match="no such file") as info:
        fetch_file(str(tmp_path / "missing.img"), str(tmp_path / "c.img"))
    assert info.value.transient is False
    assert leftovers(tmp_path) == ["a.img", "a.img.source.json", "b.img", "b.img.source.json", "src.img"]


def test_fetch_memory_round_trip(tmp_path):
    with atomic_write("memory://test-io/src.img") as f:
        f.write(BODY)
    assert fetch_file("memory://test-io/src.img", "memory://test-io/dst.img") == len(BODY)
    assert exists("memory://test-io/dst.img")
    with open_input("memory://test-io/dst.img") as f:
        assert f.read() == BODY
    assert fetch_file("memory://test-io/src.img", str(tmp_path / "d.img")) == len(BODY)
    assert (tmp_path / "d.img").read_bytes() == BODY


def test_fetch_interrupted_leaves_nothing(tmp_path, monkeypatch):
    from fsspec.implementations.local import LocalFileOpener

    src = tmp_path / "src.img"
    src.write_bytes(BODY)
    target = tmp_path / "data.img"
    target.write_bytes(b"old")
    reads = []
    real_read = LocalFileOpener.read

    def read(self, *args):
        reads.append(args)
        if len(reads) == 3:
            raise KeyboardInterrupt
        return real_read(self, *args)

    monkeypatch.setattr(LocalFileOpener, "read", read)
    with pytest.raises(KeyboardInterrupt):
        fetch_file(str(src), str(target), chunk_size=100)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["data.img", "src.img"]


def test_shell_metacharacters_are_data(http_server, tmp_path):
    marker = tmp_path / "pwned"
    for url in [
        http_server.url(f"/a;touch {marker}"),
        http_server.url(f"/a$(touch {marker})"),
        http_server.url(f"/a`touch {marker}`"),
    ]:
        with pytest.raises(FetchError) as info:
            fetch_file(url, str(tmp_path / "d.img"))
        assert "404" in str(info.value)
    local = f"$(touch {tmp_path}/pwned2)"
    with pytest.raises(FetchError, match="no such file"):
        fetch_file(local, str(tmp_path / "d.img"))
    with pytest.raises(FetchError):
        fetch_file(f"{tmp_path}/x; touch {tmp_path}/pwned3", str(tmp_path / "d.img"))
    assert leftovers(tmp_path) == []


def test_atomic_write_error_keeps_existing_file(tmp_path):
    target = tmp_path / "clip.gif"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(str(target)) as f:
            f.write(b"new partial")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["clip.gif"]
    with atomic_write(str(target)) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == ["clip.gif"]


def test_atomic_write_creates_parents_and_temp_name(tmp_path):
    target = tmp_path / "a" / "b" / "frame_00.gif"
    with atomic_write(str(target)) as f:
        (tmp,) = os.listdir(target.parent)
        assert tmp.startswith(".frame_00.gif.") and tmp.endswith(".part")
        f.write(b"x")
    assert leftovers(target.parent) == ["frame_00.gif"]


def test_atomic_write_memory_error_leaves_nothing():
    with pytest.raises(ValueError):
        with atomic_write("memory://test-io/failed.gif") as f:
            f.write(b"partial")
            raise ValueError
    assert not exists("memory://test-io/failed.gif")


def test_read_span(tmp_path):
    path = tmp_path / "d.img"
    path.write_bytes(b"0123456789")
    assert read_span(str(path), 0, 3) == b"012"
    assert read_span(str(path), 7, 3) == b"789"
    assert read_span(str(path), 4, 0) == b""
    with pytest.raises(EOFError, match="expected 5 bytes at offset 8, got 2"):
        read_span(str(path), 8, 5)
    with pytest.raises(ValueError):
        read_span(str(path), -1, 2)


def test_frame_name_widths():
    assert frame_name(0, 1) == "frame_00.gif"
    assert [frame_name(i, 100) for i in (0, 9, 99)] == ["frame_00.gif", "frame_09.gif", "frame_99.gif"]
    assert [frame_name(i, 101) for i in (0, 100)] == ["frame_000.gif", "frame_100.gif"]
    names = [frame_name(i, 1000) for i in range(1000)]
    assert names == sorted(names) and names[-1] == "frame_999.gif"
    with pytest.raises(ValueError):
        frame_name(1, 1)


def test_join_path():
    assert join_path("s3://b/dir", "f.gif") == "s3://b/dir/f.gif"
    assert join_path("memory://x/", "f.gif") == "memory://x/f.gif"
    assert join_path("memory://", "f.gif") == "memory://f.gif"
    assert join_path("", "f.gif") == "f.gif"
    assert join_path("/tmp/d", "f.gif") == os.path.join("/tmp/d", "f.gif")


def test_fetch_write_error_is_not_a_fetch_error(http_server, tmp_path):
    url = http_server.serve("/data.img", BODY)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OSError) as info:
        fetch_file(url, str(tmp_path / "file" / "data.img"))
    assert not isinstance(info.value, FetchError)
    assert leftovers(tmp_path) == ["file"]


def test_storage_options_nested_by_protocol(tmp_path):
    src = tmp_path / "s.img"
    src.write_bytes(b"abc")
    # Options nested under another protocol are not given to the local filesystem.
    options = {"s3": {"key": "k", "anon": False}, "memory": {}}
    assert fetch_file(str(src), str(tmp_path / "d.img"), storage_options=options) == 3


def test_s3_fetch_and_atomic_write(s3_server, s3_bucket, http_server, tmp_path):
    so = s3_server.storage_options
    url = http_server.serve("/data.img", BODY)
    key = f"{s3_bucket}/dir/data.img"
    assert fetch_file(url, key, storage_options={"s3": so}, chunk_size=4096) == len(BODY)
    assert exists(key, so)
    assert read_span(key, 10, 5, so) == BODY[10:15]
    # s3 -> local, flat options
    assert fetch_file(key, str(tmp_path / "back.img"), storage_options=so) == len(BODY)
    assert (tmp_path / "back.img").read_bytes() == BODY

    with pytest.raises(RuntimeError):
        with atomic_write(f"{s3_bucket}/out/clip.gif", so) as f:
            f.write(b"partial")
            raise RuntimeError
    assert not exists(f"{s3_bucket}/out/clip.gif", so)
    with pytest.raises(FetchError):
        fetch_file(http_server.url("/missing"), f"{s3_bucket}/m.img", storage_options={"s3": so})
    assert not exists(f"{s3_bucket}/m.img", so)
    with atomic_write(f"{s3_bucket}/out/clip.gif", so) as f:
        f.write(b"GIF89a")
    assert read_span(f"{s3_bucket}/out/clip.gif", 0, 6, so) == b"GIF89a"


def test_http_server_fixture_posts(http_server):
    """The shared fixture records POST bodies and applies failures to them too."""
    import json
    import urllib.error
    import urllib.request

    def post(path, data):
        request = urllib.request.Request(http_server.url(path), data=data, method="POST")
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status

    assert post("/hook", json.dumps({"ok": True}).encode()) == 200
    http_server.fail("/hook", 500, times=1)
    with pytest.raises(urllib.error.HTTPError) as info:
        post("/hook", b"raw")
    info.value.close()
    assert post("/hook", b"raw") == 200
    assert http_server.posts == [("/hook", {"ok": True}), ("/hook", b"raw"), ("/hook", b"raw")]
    assert http_server.hits("/hook", "POST") == 3


def test_write_bytes_leaves_an_identical_file_alone(tmp_path):
    path = tmp_path / "frame_00.gif"
    assert write_bytes(str(path), b"GIF89a-one")
    os.utime(path, ns=(1, 1))
    assert not write_bytes(str(path), b"GIF89a-one")
    assert path.stat().st_mtime_ns == 1
    assert write_bytes(str(path), b"GIF89a-two")
    assert path.read_bytes() == b"GIF89a-two" and path.stat().st_mtime_ns != 1
    assert sorted(os.listdir(tmp_path)) == ["frame_00.gif"]


# --- Trust: every redirect hop, declared sizes, the deadline --------------------------------------------


def test_redirect_to_a_protocol_not_allowed_is_refused(http_server, tmp_path):
    target = "https://127.0.0.1:1/new.img"
    url = http_server.redirect("/old.img", target)
    with pytest.raises(FetchError) as info:
        fetch_file(url, str(tmp_path / "d.img"), allowed_protocols=["http"], timeout=5)
    assert info.value.transient is False and info.value.url == url
    assert (f"redirected from {url} to {target}: protocol 'https' is not allowed "
            "(daskgif.allowed-protocols: http)") in str(info.value)
    assert leftovers(tmp_path) == [] and http_server.hits("/old.img") == 1


def test_every_redirect_hop_is_checked(http_server, tmp_path):
    http_server.serve("/data.img", BODY)
    hop = http_server.redirect("/hop.img", "ftp://127.0.0.1:1/x.img", status=307)
    url = http_server.redirect("/old.img", hop, status=301)
    with pytest.raises(FetchError, match=f"redirected from {hop} to ftp://127.0.0.1:1/x.img: protocol 'ftp'"):
        fetch_file(url, str(tmp_path / "d.img"), allowed_protocols=["http", "https"], timeout=5)
    # An allowed redirect is followed.
    url = http_server.redirect("/moved.img", http_server.url("/data.img"))
    assert fetch_file(url, str(tmp_path / "d.img"), allowed_protocols=["http"]) == len(BODY)
    assert (tmp_path / "d.img").read_bytes() == BODY


def test_declared_length_over_max_bytes_is_refused_before_the_body(http_server, tmp_path, monkeypatch):
    import daskgif.storage.fetch

    http_server.serve("/huge.img", BODY)
    url = http_server.declare_length("/huge.img", 10**12)
    opened = []
    monkeypatch.setattr(daskgif.storage.fetch, "atomic_write", lambda *a, **k: opened.append(a))
    with pytest.raises(FetchError) as info:
        fetch_file(url, str(tmp_path / "d.img"), max_bytes=10**6)
    assert str(info.value) == (f"cannot fetch {url}: larger than max_bytes=1000000 (daskgif.max-bytes): "
                               "it declares 1000000000000 bytes")
    assert info.value.transient is False
    assert opened == [] and leftovers(tmp_path) == []


def test_body_shorter_than_its_content_length_is_transient(http_server, tmp_path):
    http_server.serve("/short.img", BODY)
    url = http_server.declare_length("/short.img", len(BODY) + 100)
    target = tmp_path / "d.img"
    target.write_bytes(b"old")
    with pytest.raises(FetchError) as info:
        fetch_file(url, str(target), chunk_size=1000)
    assert info.value.transient is True
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == ["d.img"]


def test_deadline_bounds_a_steady_trickle(http_server, tmp_path):
    http_server.serve("/slow.img", BODY * 4)  # 64 KiB at 5 KiB/s: 13 s
    url = http_server.trickle("/slow.img", 1000, 0.2)
    with pytest.raises(FetchError) as info:
        fetch_file(url, str(tmp_path / "d.img"), timeout=5, deadline=1)
    assert "not finished within the deadline of 1 s" in str(info.value)
    assert "(daskgif.fetch-deadline)" in str(info.value)
    assert info.value.transient is True
    assert leftovers(tmp_path) == []


def test_deadline_with_an_injected_clock(tmp_path):
    src = tmp_path / "src.img"
    src.write_bytes(BODY)
    ticks = iter(range(1000))
    with pytest.raises(FetchError, match=r"deadline of 3 s \(\d+ bytes copied\) \(daskgif.fetch-deadline\)"):
        fetch_file(str(src), str(tmp_path / "d.img"), chunk_size=100, deadline=3, clock=lambda: next(ticks))
    assert leftovers(tmp_path) == ["src.img"]
    assert fetch_file(str(src), str(tmp_path / "d.img"), deadline=3600) == len(BODY)
    with pytest.raises(ValueError, match="deadline must be a positive number"):
        fetch_file(str(src), str(tmp_path / "d.img"), deadline=0)


# --- Trust: where the data file came from ---------------------------------------------------------------


def test_fetch_records_its_source_without_the_url_in_clear(http_server, tmp_path):
    import json

    http_server.serve("/data.img", BODY)
    http_server.validators("/data.img", etag='"v1"', last_modified="Mon, 30 Nov 2026 10:00:00 GMT")
    url = http_server.url("/data.img").replace("http://", "http://me:hunter2@")
    data_file = str(tmp_path / "data.img")
    fetch_file(url, data_file)
    text = (tmp_path / "data.img.source.json").read_text()
    assert "hunter2" not in text
    record = json.loads(text)
    assert record == read_source(data_file)
    assert record["url_sha256"] == url_digest(url) and record["url"] == url.replace("hunter2", "***")
    assert record["size"] == len(BODY) and record["etag"] == '"v1"'
    assert record["last_modified"] == "Mon, 30 Nov 2026 10:00:00 GMT" and record["fetched_at"].startswith("20")


def test_fetch_needed_reasons(http_server, tmp_path):
    a, b = http_server.serve("/a.img", BODY), http_server.serve("/b.img", BODY)
    data_file = str(tmp_path / "image-data.img")
    assert fetch_needed(a, data_file, check_remote=False) == f"{data_file} does not exist; fetching {a}"
    fetch_file(a, data_file)
    assert fetch_needed(a, data_file, check_remote=False) is None
    assert fetch_needed(b, data_file, check_remote=False) == f"{data_file} came from another URL ({a}); fetching {b}"
    with open(data_file, "ab") as f:
        f.write(b"more")
    assert fetch_needed(a, data_file, check_remote=False) == (
        f"{data_file} has {len(BODY) + 4} bytes, not the {len(BODY)} fetched from {a}; fetching it again")
    os.unlink(data_file + ".source.json")
    assert fetch_needed(a, data_file, check_remote=False) == (
        f"{data_file} has no record of its source ({data_file}.source.json); fetching {a}")
    # A local data file with no record is reused only as its own source.
    assert fetch_needed(data_file, data_file, check_remote=False) is None
    assert fetch_needed(f"file://{data_file}", data_file, check_remote=True) is None


def test_fetch_needed_asks_the_server(http_server, tmp_path, caplog):
    http_server.serve("/a.img", BODY)
    url = http_server.validators("/a.img", etag='"v1"', last_modified="Mon, 30 Nov 2026 10:00:00 GMT")
    data_file = str(tmp_path / "image-data.img")
    fetch_file(url, data_file)
    assert fetch_needed(url, data_file, check_remote=True) is None
    assert http_server.hits("/a.img", "HEAD") == 1
    http_server.validators("/a.img", etag='"v2"', last_modified="Mon, 30 Nov 2026 10:00:00 GMT")
    assert fetch_needed(url, data_file, check_remote=False) is None
    assert fetch_needed(url, data_file, check_remote=True) == (
        f'the server reports a change (ETag "v1" -> "v2"); fetching {url}')
    http_server.validators("/a.img", last_modified="Tue, 01 Dec 2026 10:00:00 GMT")
    fetch_file(url, data_file)
    assert fetch_needed(url, data_file, check_remote=True) is None
    http_server.validators("/a.img", last_modified="Wed, 02 Dec 2026 10:00:00 GMT")
    assert "(Last-Modified Tue, 01 Dec 2026 10:00:00 GMT -> Wed" in fetch_needed(url, data_file, check_remote=True)
    # A server that cannot be asked keeps what was fetched.
    http_server.fail("/a.img", 503, times=10)
    with caplog.at_level("WARNING", logger="daskgif.storage"):
        assert fetch_needed(url, data_file, check_remote=True) is None
    assert "cannot ask the server whether it changed" in caplog.text


def test_a_failed_fetch_forgets_the_old_source(http_server, tmp_path):
    a = http_server.serve("/a.img", BODY)
    data_file = str(tmp_path / "image-data.img")
    fetch_file(a, data_file)
    http_server.serve("/a.img", BODY)
    url = http_server.reset("/a.img", after_bytes=100)
    with pytest.raises(FetchError):
        fetch_file(url, data_file, chunk_size=10)
    assert (tmp_path / "image-data.img").read_bytes() == BODY  # the old data is untouched...
    assert "has no record" in fetch_needed(a, data_file, check_remote=False)  # ...but fetched again


# --- Trust: one run per data file -----------------------------------------------------------------------

HOLD = """
import sys
from daskgif.storage import Lease
Lease(sys.argv[1], owner="run-A", seconds=30).acquire()
print("held", flush=True)
sys.stdin.readline()
Lease(sys.argv[1], owner="run-A", seconds=30).release()
print("released", flush=True)
"""


def child(code: str, *args: str):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() in ("held", "writing")
    return proc


def test_a_lease_held_by_another_process_fails_at_once_naming_it(tmp_path):
    import pickle

    data_file = str(tmp_path / "image-data.img")
    proc = child(HOLD, data_file)
    try:
        with pytest.raises(LockHeld) as info:
            Lease(data_file, owner="run-B", seconds=30).acquire()
        message = str(info.value)
        assert message.startswith(f"{data_file}.lock is held by run run-A (host ")
        assert f"pid {proc.pid}, renewed 20" in message and "daskgif.lock-timeout" in message
        assert str(pickle.loads(pickle.dumps(info.value))) == message
        assert info.value.transient is False
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
        assert Lease(data_file, owner="run-B", seconds=30).acquire()["owner"] == "run-B"
        Lease(data_file, owner="run-B", seconds=30).release()
    finally:
        proc.kill()
        proc.wait()
    assert leftovers(tmp_path) == []


def test_the_lease_of_a_killed_process_is_broken(tmp_path, caplog):
    data_file = f"file://{tmp_path}/image-data.img"
    proc = child(HOLD, data_file)
    proc.kill()
    proc.wait()
    assert leftovers(tmp_path) == ["image-data.img.lock"]
    with caplog.at_level("WARNING", logger="daskgif.storage"):
        Lease(data_file, owner="run-B", seconds=30).acquire()
    assert f"Breaking the stale lock {data_file}.lock of run run-A" in caplog.text
    assert f"its process (pid {proc.pid}) is gone" in caplog.text


def test_a_lease_not_renewed_ends_after_its_seconds(tmp_path, caplog):
    import json

    data_file = str(tmp_path / "d.img")
    held = {"host": "elsewhere", "pid": 1, "owner": "run-X", "expires": time.time() + 1000, "renewed_at": "then"}
    (tmp_path / "d.img.lock").write_text(json.dumps(held))
    with pytest.raises(LockHeld, match="held by run run-X"):
        Lease(data_file, owner="run-B", seconds=10).acquire()
    (tmp_path / "d.img.lock").write_text(json.dumps({**held, "expires": time.time() - 50}))
    with caplog.at_level("WARNING", logger="daskgif.storage"):
        Lease(data_file, owner="run-B", seconds=10).acquire()
    assert "its lease ended 50 s ago" in caplog.text


@pytest.mark.parametrize("kind", ["garbage", "empty"])
def test_a_lock_file_that_says_nothing_is_broken(tmp_path, kind, caplog):
    lock = tmp_path / "d.img.lock"
    lock.write_bytes(b"\x00\xff not json" if kind == "garbage" else b"")
    with caplog.at_level("WARNING", logger="daskgif.storage"):
        assert Lease(str(tmp_path / "d.img"), owner="run-B", seconds=10).acquire()["owner"] == "run-B"
    assert "it says nothing of its holder" in caplog.text


def test_a_lease_is_reentrant_for_its_run_and_exclusive_between_runs():
    data_file = "memory://test-io-lock/image-data.img"
    mine = Lease(data_file, owner="run-A", seconds=30)
    first = mine.acquire()
    again = Lease(data_file, owner="run-A", seconds=30).acquire()  # another task of the same run, moments later:
    assert again == first  # the lease is read, not written again
    fsspec.filesystem("memory").pipe(data_file + ".lock", json.dumps({**first, "expires": time.time() + 5}).encode())
    renewed = Lease(data_file, owner="run-A", seconds=30).acquire()  # two thirds of it gone: renewed
    assert renewed["expires"] > time.time() + 25 and renewed["token"] != first["token"]
    with pytest.raises(LockHeld, match=rf"held by run run-A \(host .*, pid {os.getpid()},"):
        Lease(data_file, owner="run-B", seconds=30).acquire()
    with mine.kept():  # kept: renewed while the block runs, still held after it
        pass
    assert exists(data_file + ".lock")
    Lease(data_file, owner="run-B", seconds=30).release()  # not run-B's to release
    assert exists(data_file + ".lock")
    mine.release()
    assert not exists(data_file + ".lock")


# --- Trust: temporary files of killed writers -----------------------------------------------------------

WRITE = """
import sys, time
from daskgif.storage import atomic_write
with atomic_write(sys.argv[1]) as f:
    f.write(b"x" * 100_000)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_remove_stale_parts_of_a_killed_writer(tmp_path):
    frames = tmp_path / "frames"
    dead = child(WRITE, str(frames / "frame_00.gif"))
    live = child(WRITE, str(frames / "frame_01.gif"))
    other = child(WRITE, str(tmp_path / "image-data.img"))
    try:
        dead.kill()
        dead.wait()
        (dead_part,) = [n for n in os.listdir(frames) if n.startswith(".frame_00.gif.")]
        assert f"-{dead.pid}-" in dead_part
        old = frames / (".frame_02.gif." + "ab" * 16 + ".part")  # an older daskgif's, not written for long
        old.write_bytes(b"x")
        os.utime(old, (time.time() - 7200,) * 2)
        assert remove_stale_parts(str(frames), "frame_", max_age=None) == [str(frames / dead_part)]
        assert remove_stale_parts(str(frames), "frame_", max_age=3600) == [str(old)]
        (live_part,) = os.listdir(frames)
        assert live_part.startswith(".frame_01.gif.") and f"-{live.pid}-" in live_part
        other.kill()
        other.wait()
        assert remove_stale_parts(str(tmp_path), "frames") == []
        assert len(remove_stale_parts(f"file://{tmp_path}", "image-data.img")) == 1
    finally:
        for proc in (dead, live, other):
            proc.kill()
            proc.wait()
    assert remove_stale_parts(str(frames)) == [str(frames / live_part)]
    assert leftovers(frames) == [] and leftovers(tmp_path) == ["frames"]
    assert remove_stale_parts(str(tmp_path / "none")) == []


def test_an_upload_whose_writer_was_killed_is_removed_from_the_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where uploads are written before they go
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".{UPLOAD_NAME}.{host_name()}-{int(gone.stdout)}-{'ab' * 16}.part"
    live = tmp_path / part_name(UPLOAD_NAME)  # this process's, still uploading
    for part in (dead, live):
        part.write_bytes(b"x" * 1000)
    assert remove_dead_uploads(every=0) == [str(dead)]  # what remove_stale_parts does for other URLs
    assert not dead.exists() and live.exists()
    assert remove_dead_uploads(every=600) == []  # at most once every 10 minutes in a process


def test_a_stale_part_that_cannot_be_removed_is_left_and_logged(tmp_path, caplog):
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        part = folder / f".frame_00.gif.{host_name()}-{int(gone.stdout)}-{'ab' * 16}.part"
        part.write_bytes(b"x")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)  # now it cannot go
        assert remove_stale_parts(str(folder), "frame_") == []
        assert part.exists() and "Cannot remove the stale temporary file" in caplog.text
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_stopped_download_ends_before_its_next_chunk_and_leaves_nothing(tmp_path):
    (tmp_path / "in.img").write_bytes(bytes(10_000))
    asked = []
    with pytest.raises(Cancelled, match="stopped after 1000 bytes"):
        fetch_file(str(tmp_path / "in.img"), str(tmp_path / "d.img"), chunk_size=1000,
                   stop=lambda: asked.append(1) or len(asked) > 1)  # stopped once the first chunk is in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.img"]


def test_a_local_source_changed_in_place_is_fetched_again(tmp_path):
    source, data_file = tmp_path / "in.img", str(tmp_path / "d.img")
    source.write_bytes(b"frame one")
    os.utime(source, (1_700_000_000, 1_700_000_000))
    fetch_file(str(source), data_file)
    assert fetch_needed(str(source), data_file, check_remote=True) is None
    source.write_bytes(b"frame two")  # the same size: only its time tells
    os.utime(source, (1_700_000_100, 1_700_000_100))
    why = fetch_needed(str(source), data_file, check_remote=True)
    assert why == f"{source} changed since it was fetched (1700000000.0 -> 1700000100.0); fetching it again"
    assert fetch_needed(str(source), data_file, check_remote=False) is None  # the check is the setting's
    source.unlink()  # gone: the data file is all there is
    assert fetch_needed(str(source), data_file, check_remote=True) is None


# --- Trust: file:// paths, read-only and full disks -----------------------------------------------------


def test_file_urls_everywhere(tmp_path):
    src = tmp_path / "src.img"
    src.write_bytes(BODY)
    base = f"file://{tmp_path}"
    assert fetch_file(f"{base}/src.img", f"{base}/data.img") == len(BODY)
    assert (tmp_path / "data.img").read_bytes() == BODY and exists(f"{base}/data.img")
    assert fetch_needed(f"{base}/src.img", f"{base}/data.img", check_remote=True) is None
    with atomic_write(f"{base}/out/clip.gif") as f:
        f.write(b"GIF89a")
    assert (tmp_path / "out" / "clip.gif").read_bytes() == b"GIF89a"
    assert write_bytes(f"{base}/frames/frame_00.gif", b"GIF89a-0")
    assert not write_bytes(f"{base}/frames/frame_00.gif", b"GIF89a-0")
    assert read_span(f"{base}/frames/frame_00.gif", 6, 2) == b"-0"
    assert read_span(f"{base}/data.img", 0, 2) == BODY[:2]
    with open_input(f"{base}/out/clip.gif") as f:
        assert f.read() == b"GIF89a"
    assert leftovers(tmp_path) == ["data.img", "data.img.source.json", "frames", "out", "src.img"]


@pytest.fixture
def read_only_dir(tmp_path):
    """A real read-only file system (a tmpfs mounted read-only), where mounting is allowed."""
    import subprocess

    path = tmp_path / "ro"
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_an_error_with_only_a_message_keeps_it_when_named():
    from daskgif.storage.files import named

    error = named(PermissionError("Access Denied"), "s3://b/clip.gif.lock", " (taking the lock)")
    assert isinstance(error, PermissionError)
    assert str(error) == "Access Denied (taking the lock): 's3://b/clip.gif.lock'"


def test_a_lock_that_cannot_be_written_is_named_as_the_lock(read_only_dir, tmp_path):
    import errno

    free = tmp_path / "d.img"
    lease = Lease([str(free), str(read_only_dir / "clip.gif")], owner="run-1", seconds=30)
    with pytest.raises(OSError) as info:
        lease.acquire()
    lock = read_only_dir / "clip.gif.lock"
    assert info.value.errno == errno.EROFS and info.value.filename == str(lock)
    assert f"(taking the lock {lock}, which guards {read_only_dir / 'clip.gif'})" in str(info.value)
    assert not (tmp_path / "d.img.lock").exists()  # the lock it had taken is given back


def test_atomic_write_to_a_read_only_file_system(read_only_dir, http_server):
    import errno

    from daskgif.errors import is_transient

    target = read_only_dir / "clip.gif"
    with pytest.raises(OSError) as info:
        with atomic_write(str(target)) as f:
            f.write(b"x")  # pragma: no cover
    assert info.value.errno == errno.EROFS and str(target) in str(info.value)
    assert not is_transient(info.value)
    with pytest.raises(OSError) as info:
        fetch_file(http_server.serve("/d.img", BODY), str(read_only_dir / "d.img"))
    assert not isinstance(info.value, FetchError) and not is_transient(info.value)
    assert leftovers(read_only_dir) == []


@pytest.mark.parametrize("number", ["EROFS", "EACCES", "ENOSPC"])
def test_write_errors_are_permanent_and_name_the_path(tmp_path, monkeypatch, number):
    import builtins
    import errno

    import daskgif.storage.files
    from daskgif.errors import is_transient

    code = getattr(errno, number)

    def refuse(file, mode="r", *args, **kwargs):
        if "x" in mode or "w" in mode:
            raise OSError(code, os.strerror(code), file)
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(daskgif.storage.files, "open", refuse, raising=False)
    target = tmp_path / "out" / "clip.gif"
    with pytest.raises(OSError) as info:
        write_bytes(str(target), b"GIF89a")
    assert info.value.errno == code and info.value.filename == str(target)
    assert str(target) in str(info.value) and ".part" not in str(info.value)
    assert not is_transient(info.value)
    assert leftovers(tmp_path / "out") == []


def test_s3_source_record_and_lock(s3_server, s3_bucket):
    so = s3_server.storage_options
    with atomic_write(f"{s3_bucket}/src.img", so) as f:
        f.write(BODY)
    data_file = f"{s3_bucket}/data.img"
    reason = fetch_needed(f"{s3_bucket}/src.img", data_file, so, check_remote=True)
    assert reason == f"{data_file} does not exist; fetching {s3_bucket}/src.img"
    assert fetch_file(f"{s3_bucket}/src.img", data_file, storage_options=so) == len(BODY)
    assert read_source(data_file, so)["size"] == len(BODY)
    assert fetch_needed(f"{s3_bucket}/src.img", data_file, so, check_remote=True) is None
    assert "came from another URL" in fetch_needed(f"{s3_bucket}/other.img", data_file, so, check_remote=True)
    lease = Lease(data_file, so, owner="run-A", seconds=30)
    lease.acquire()  # S3's conditional write ("xb") is exclusive
    assert exists(f"{data_file}.lock", so)
    with pytest.raises(LockHeld, match=f"{data_file}.lock is held by run run-A"):
        Lease(data_file, so, owner="run-B", seconds=30).acquire()
    lease.renew()
    lease.release()
    assert not exists(f"{data_file}.lock", so)


# --- Only regular files: no fifo, device, folder or link is replaced, waited on or followed ------------

def test_a_fifo_or_a_link_where_the_lock_goes_is_named_never_waited_on(tmp_path):
    os.mkfifo(tmp_path / "d.img.lock")
    with pytest.raises(FileExistsError, match=r"is a fifo, not a regular file"):
        Lease(str(tmp_path / "d.img"), owner="run-A", seconds=10).acquire()
    os.symlink(tmp_path / "nowhere", tmp_path / "e.img.lock")  # dangling
    with pytest.raises(OSError, match=r"is a symbolic link, not a file daskgif wrote"):
        Lease(str(tmp_path / "e.img"), owner="run-A", seconds=10).acquire()
    assert os.path.islink(tmp_path / "e.img.lock") and not os.path.exists(tmp_path / "nowhere")


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_an_output_that_is_not_a_regular_file_is_refused_untouched(tmp_path, kind):
    target = tmp_path / "clip.gif"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root (CI runs as root)")
        os.mknod(target, 0o666 | __import__("stat").S_IFCHR, os.makedev(1, 3))  # like /dev/null
    before = os.lstat(target)
    error = IsADirectoryError if kind == "folder" else FileExistsError
    with pytest.raises(error, match=r"Is a directory|not a regular file: daskgif replaces only regular files"):
        with atomic_write(str(target)) as f:
            f.write(b"GIF89a")
    after = os.lstat(target)
    assert (before.st_mode, before.st_ino) == (after.st_mode, after.st_ino)
    assert leftovers(tmp_path) == ["clip.gif"]


def test_a_manifest_that_is_a_fifo_means_a_full_rerun(tmp_path, caplog):
    from daskgif import build_graph

    kwargs = {"data_file": str(tmp_path / "d.img"), "out": str(tmp_path / "c.gif")}
    first = build_graph(**kwargs).compute(scheduler="sync")
    manifest = tmp_path / "frames" / ".frames-manifest.json"
    manifest.unlink()
    os.mkfifo(manifest)
    with caplog.at_level("WARNING", logger="daskgif"):
        again = build_graph(**kwargs).compute(scheduler="sync")
    assert again.ok and again.reused == 0 and len(again.frames) == len(first.frames)
    assert "Ignoring the frames manifest" in caplog.text and "is a fifo" in caplog.text
