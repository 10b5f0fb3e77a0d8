"""Tests of daskgif.io: fetching, atomic writes and span reads, against real servers."""

from __future__ import annotations

import os
import pickle
import time

import fsspec
import pytest

from daskgif.errors import FetchError
from daskgif.io import (
    atomic_write,
    exists,
    fetch_file,
    frame_name,
    join_path,
    open_input,
    read_span,
    read_spans,
    write_bytes,
)

BODY = bytes(range(256)) * 64 + b"\n\n\n\n" * 10  # 16 KiB + a little


def leftovers(directory) -> list[str]:
    """Names in *directory*, temporary files included."""
    return sorted(os.listdir(directory))


def test_fetch_http_byte_identical(http_server, tmp_path):
    url = http_server.serve("/data.img", BODY)
    data_file = tmp_path / "sub" / "data.img"
    n = fetch_file(url, str(data_file), chunk_size=1000)
    assert n == len(BODY)
    assert data_file.read_bytes() == BODY
    assert leftovers(data_file.parent) == ["data.img"]
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


def test_fetch_connection_reset_is_transient(http_server, tmp_path):
    http_server.serve("/data.img", BODY)
    url = http_server.reset("/data.img", after_bytes=5000)
    target = tmp_path / "data.img"
    with pytest.raises(FetchError) as info:
        fetch_file(url, str(target), chunk_size=1000)
    assert info.value.transient is True
    assert leftovers(tmp_path) == []
    assert fetch_file(url, str(target)) == len(BODY)  # reset only once


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
    start = time.monotonic()
    with pytest.raises(FetchError, match="timed out") as info:
        fetch_file(url, str(tmp_path / "slow.img"), timeout=1)
    assert time.monotonic() - start < 6
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
    assert leftovers(tmp_path) == ["a.img", "b.img", "src.img"]


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


def test_read_span_and_spans(tmp_path):
    path = tmp_path / "d.img"
    path.write_bytes(b"0123456789")
    assert read_span(str(path), 0, 3) == b"012"
    assert read_span(str(path), 7, 3) == b"789"
    assert read_span(str(path), 4, 0) == b""
    assert list(read_spans(str(path), [(8, 2), (0, 1), (3, 4)])) == [b"89", b"0", b"3456"]
    with pytest.raises(EOFError, match="expected 5 bytes at offset 8, got 2"):
        read_span(str(path), 8, 5)
    with pytest.raises(ValueError):
        read_span(str(path), -1, 2)


def test_read_spans_opens_once(tmp_path, monkeypatch):
    path = tmp_path / "d.img"
    path.write_bytes(BODY)
    calls = []
    real = fsspec.open
    monkeypatch.setattr(fsspec, "open", lambda *a, **k: calls.append(a) or real(*a, **k))
    spans = [(i * 100, 50) for i in range(20)]
    assert list(read_spans(str(path), spans)) == [BODY[o : o + n] for o, n in spans]
    assert len(calls) == 1


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
