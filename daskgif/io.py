"""Every byte daskgif reads or writes, through fsspec.

A path is anything fsspec opens: a local path, ``file://``, ``https://``, ``s3://``,
``memory://`` (per process), ...  Writes are atomic: data appears under its final name
only once complete.  Settings are arguments: callers read ``dask.config`` on the client.

``storage_options`` are passed to fsspec.  When the two ends of a copy need different
options, nest them under the protocol name (``{"s3": {"key": ...}, "https": {...}}``);
top-level options are used for both ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import tempfile
import uuid
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, BinaryIO, ContextManager

import fsspec
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from .errors import FetchError

__all__ = [
    "atomic_write", "exists", "fetch_file", "frame_name", "join_path", "open_input", "read_span",
    "read_spans", "write_bytes",
]  # fmt: skip

logger = logging.getLogger(__name__)

# Statuses that may go away on their own: request timeout, rate limit, server errors.
_TRANSIENT_STATUS = (408, 425, 429)


def _protocols(url: str) -> list[str]:
    """Protocols of a (possibly chained) URL; a plain path is ``file``.

    In a chain every part but the last may be a bare protocol name (fsspec's ``simplecache::``).

    >>> _protocols("simplecache::zip://a.img::s3://bucket/b.zip"), _protocols("/tmp/a.img")
    (['simplecache', 'zip', 's3'], ['file'])
    """
    parts = url.split("::")
    return [split_protocol(part)[0] or (part if i < len(parts) - 1 and part.isidentifier() else "file")
            for i, part in enumerate(parts)]


def _options(url: str, storage_options: dict | None) -> dict:
    """The fsspec options for *url*: top-level ones, updated by those nested under its protocol."""
    so = dict(storage_options or {})
    if "::" in url:  # fsspec's own convention for chained URLs: options nested by protocol
        return so
    known = set(fsspec.available_protocols()) | set(fsspec.registry)
    nested = {k: so.pop(k) for k in list(so) if isinstance(so[k], dict) and k in known}
    for protocol in _protocols(url):
        so.update(nested.get(protocol, {}))
    return so


def _local(path: str) -> str | None:
    """The plain file-system path of *path* when it is local, else ``None``.

    Local paths skip fsspec's URL parsing, which costs more than the I/O of a small frame.

    >>> _local("a/b.gif"), _local("file:///tmp/b.gif"), _local("s3://bucket/b.gif")
    ('a/b.gif', '/tmp/b.gif', None)
    """
    if "::" in path:
        return None
    protocol, rest = split_protocol(path)
    return rest if protocol in (None, "file", "local") else None


def fetch_file(
    url: str,
    data_file: str,
    *,
    storage_options: dict | None = None,
    chunk_size: int = 4 * 2**20,
    timeout: float = 60,
    max_bytes: int | None = None,
    allowed_protocols: Collection[str] | None = None,
) -> int:
    """Copy *url* to *data_file*, chunk by chunk, atomically.

    The bytes go to a temporary file that takes the final name only once the
    copy is complete (see :func:`atomic_write`), so no partial *data_file*
    ever appears, whatever the failure (``KeyboardInterrupt`` included).

    Parameters
    ----------
    url : str
        Any fsspec URL or local path.  It is data, never given to a shell.
    data_file : str
        Where the bytes go (any writable fsspec path).
    storage_options : dict, optional
        fsspec options; see the module docstring for per-protocol options.
    chunk_size : int, optional
        Bytes read and written at a time; the whole file is never in memory.
    timeout : float, optional
        Seconds an HTTP(S) download may stall (no connection, no bytes) before it fails.
    max_bytes : int, optional
        The largest accepted download; a larger one fails and leaves nothing.
    allowed_protocols : collection of str, optional
        Protocols accepted for *url* (a plain path is ``file``); another one
        is refused before any I/O.  ``None`` accepts all.

    Returns
    -------
    int
        Number of bytes copied.

    Raises
    ------
    FetchError
        Naming *url*.  ``transient`` is true for connection errors, timeouts
        and HTTP 5xx/408/429; false for other HTTP statuses, missing files,
        bad or refused URLs and downloads larger than *max_bytes*.
    OSError
        Writing *data_file* failed (disk full, permission denied, ...).
    """
    if not isinstance(url, str) or not url:
        raise FetchError(repr(url), f"url must be a non-empty string, got {url!r}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    protocols = _protocols(url)
    if allowed_protocols is not None:
        allowed = sorted({p.lower() for p in allowed_protocols})
        for p in (p for p in protocols if p.lower() not in allowed):
            msg = f"protocol {p!r} is not allowed (daskgif.allowed-protocols: {', '.join(allowed)})"
            raise FetchError(url, msg)
    options = _options(url, storage_options)
    http = protocols[-1] in ("http", "https")
    if http:
        import aiohttp

        stall = aiohttp.ClientTimeout(sock_read=timeout, sock_connect=timeout)
        options["client_kwargs"] = {"timeout": stall, "response_class": _response_class(),
                                    **(options.get("client_kwargs") or {})}
    try:
        fs, path = url_to_fs(url, **options)
        # block_size=0 streams; the size hint skips fsspec's HEAD/GET probe, which
        # costs requests and turns every failed status into FileNotFoundError.
        source = fs.open(path, "rb", **({"block_size": 0, "size": -1} if http else {}))
    except Exception as e:
        raise _fetch_error(url, e, http=http, timeout=timeout) from e
    copied = 0
    with source as src, atomic_write(data_file, storage_options) as dst:
        while True:
            want = chunk_size if max_bytes is None else min(chunk_size, max_bytes - copied + 1)
            try:
                chunk = src.read(want)
            except Exception as e:
                raise _fetch_error(url, e, http=http, timeout=timeout) from e
            if not chunk:
                lost = _connection_error(src)
                if lost is not None:
                    raise FetchError(url, f"connection lost after {copied} bytes, before the end of the body "
                                          f"(no Content-Length): {lost}", transient=True)
                break
            copied += len(chunk)
            if max_bytes is not None and copied > max_bytes:
                raise FetchError(url, f"larger than max_bytes={max_bytes} (daskgif.max-bytes)")
            dst.write(chunk)
    logger.debug("Fetched %d bytes from %s to %s", copied, url, data_file)
    return copied


@functools.lru_cache(maxsize=None)
def _response_class() -> type:
    """An ``aiohttp.ClientResponse`` that keeps the future of its connection's closing.

    A body without ``Content-Length`` (or chunked encoding) ends when the connection
    closes, and aiohttp reads a reset connection as a clean end: a truncated download
    would pass as complete.  The connection's ``closed`` future tells the two apart.
    """
    import aiohttp

    class Response(aiohttp.ClientResponse):
        daskgif_closed: asyncio.Future | None = None

        async def start(self, connection):  # type: ignore[no-untyped-def]
            closed = getattr(connection.protocol, "closed", None)
            if isinstance(closed, asyncio.Future):
                # Retrieve the exception whatever happens, so asyncio never logs it as unhandled.
                closed.add_done_callback(lambda f: f.cancelled() or f.exception())
                self.daskgif_closed = closed
            return await super().start(connection)

    return Response


def _connection_error(source: object) -> BaseException | None:
    """The error that closed the connection of an HTTP body read to its end without a length, if any."""
    response = getattr(source, "r", None)
    closed = getattr(response, "daskgif_closed", None)
    if closed is None or response.content_length is not None:
        return None
    if "chunked" in response.headers.get("Transfer-Encoding", "").lower():
        return None  # aiohttp checks the end of a chunked body itself
    if not closed.done() or closed.cancelled():
        return None
    error = closed.exception()
    return None if error is None else (error.__cause__ or error)


def _fetch_error(url: str, e: BaseException, *, http: bool, timeout: float) -> FetchError:
    """Classify *e*, raised while fetching *url*, as a transient or permanent FetchError."""
    import aiohttp

    if isinstance(e, aiohttp.ClientResponseError):
        transient = e.status >= 500 or e.status in _TRANSIENT_STATUS
        return FetchError(url, f"HTTP {e.status} {e.message}".strip(), transient)
    if isinstance(e, aiohttp.InvalidURL):
        return FetchError(url, f"bad URL: {e}")
    if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
        return FetchError(url, f"timed out: no data for {timeout} s (daskgif.fetch-timeout)", True)
    if isinstance(e, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)):
        return FetchError(url, f"{type(e).__name__}: {e}", transient=True)
    if isinstance(e, FileNotFoundError):
        return FetchError(url, "HTTP 404 Not Found" if http else "no such file")
    if isinstance(e, (ValueError, ImportError)):
        return FetchError(url, f"bad URL: {e}")
    return FetchError(url, f"{type(e).__name__}: {e}")


def exists(path: str, storage_options: dict | None = None) -> bool:
    """Whether *path* exists.

    >>> exists("memory://daskgif-doctest/missing.img")
    False
    """
    fs, p = url_to_fs(path, **_options(path, storage_options))
    return fs.exists(p)


@contextmanager
def atomic_write(path: str, storage_options: dict | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file whose data appears at *path* only if the block succeeds.

    Locally the data goes to ``.<name>.<uuid>.part`` in the same directory,
    renamed over *path* with :func:`os.replace` once complete.  Elsewhere
    (object stores, ``memory://``) it goes to a local temporary file uploaded
    with ``put_file`` once complete, so no partial object is ever visible.
    Missing local parent directories are created.  On error (``KeyboardInterrupt``
    included) the temporary file is removed and an existing *path* is untouched.

    Parameters
    ----------
    path : str
        Destination, any writable fsspec path.
    storage_options : dict, optional
        fsspec options.

    Examples
    --------
    >>> with atomic_write("memory://daskgif-doctest/a.bin") as f:
    ...     _ = f.write(b"data")
    >>> read_span("memory://daskgif-doctest/a.bin", 1, 2)
    b'at'
    """
    p = _local(path)
    if p is None:
        fs, p = url_to_fs(path, **_options(path, storage_options))
    local = p == path or isinstance(fs, LocalFileSystem)
    if local:
        directory, name = os.path.split(p)
        if directory:  # a bare file name lives in the working directory, which exists
            os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.part")
    else:
        fd, tmp = tempfile.mkstemp(prefix=".daskgif-", suffix=".part")
        os.close(fd)
    try:
        with open(tmp, "wb") as f:
            yield f
        # No fsync: the rename is atomic against a crash or kill of the process, which is the
        # promise; an fsync per frame made writing 1,000 small frames four times slower.
        if local:
            os.replace(tmp, p)
        else:
            fs.put_file(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def open_input(path: str, storage_options: dict | None = None, mode="rb") -> ContextManager[IO]:
    """Open *path* for reading; use as a context manager.

    >>> with atomic_write("memory://daskgif-doctest/b.bin") as f:
    ...     _ = f.write(b"hello")
    >>> with open_input("memory://daskgif-doctest/b.bin") as f:
    ...     f.read()
    b'hello'
    """
    if "r" not in mode or any(c in mode for c in "wax+"):
        raise ValueError(f"mode must be a read mode such as 'rb', got {mode!r}")
    return fsspec.open(path, mode, **_options(path, storage_options))


def read_span(path: str, offset: int, length: int, storage_options: dict | None = None) -> bytes:
    """Read *length* bytes of *path* from *offset*; ``EOFError`` if the file ends first.

    >>> with atomic_write("memory://daskgif-doctest/c.bin") as f:
    ...     _ = f.write(b"0123456789")
    >>> read_span("memory://daskgif-doctest/c.bin", 3, 4)
    b'3456'
    """
    local = _local(path)
    with open(local, "rb") if local is not None else open_input(path, storage_options) as f:
        return _read_at(f, path, offset, length)


def write_bytes(path: str, data: bytes, storage_options: dict | None = None) -> bool:
    """Write *data* to *path* atomically, unless *path* already holds exactly *data*.

    Returns whether the file was written.  An identical local file is left as it
    is (its time stamps too): re-running a pipeline over the same frames rewrites
    nothing, and renaming over an existing file costs a flush on many file systems.

    >>> write_bytes("memory://daskgif-doctest/e.bin", b"abc")
    True
    """
    local = _local(path)
    if local is not None and os.path.isfile(local) and os.path.getsize(local) == len(data):
        with open(local, "rb") as f:
            if f.read() == data:
                return False
    with atomic_write(path, storage_options) as f:
        f.write(data)
    return True


def read_spans(
    path: str, spans: Iterable[tuple[int, int]], storage_options: dict | None = None
) -> Iterator[bytes]:
    """Read each ``(offset, length)`` span of *path* in turn, opening it once.

    >>> with atomic_write("memory://daskgif-doctest/d.bin") as f:
    ...     _ = f.write(b"0123456789")
    >>> list(read_spans("memory://daskgif-doctest/d.bin", [(0, 2), (8, 2)]))
    [b'01', b'89']
    """
    with open_input(path, storage_options) as f:
        for offset, length in spans:
            yield _read_at(f, path, offset, length)


def _read_at(f: IO, path: str, offset: int, length: int) -> bytes:
    if offset < 0 or length < 0:
        raise ValueError(f"span must have offset >= 0 and length >= 0, got {(offset, length)!r}")
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise EOFError(f"{path}: expected {length} bytes at offset {offset}, got {len(data)}")
    return data


def join_path(directory: str, name: str) -> str:
    """Join *name* to *directory*, a local path or a URL.

    >>> join_path("s3://bucket/dir/", "frame_00.gif")
    's3://bucket/dir/frame_00.gif'
    >>> join_path(".", "frame_00.gif") == os.path.join(".", "frame_00.gif")
    True
    """
    if "://" not in directory:
        return os.path.join(directory, name)
    if directory.endswith("://"):
        return directory + name
    return directory.rstrip("/") + "/" + name


def frame_name(index: int, count: int) -> str:
    """File name of frame *index* of *count*, zero-padded so names sort in order.

    >>> frame_name(0, 1), frame_name(99, 100), frame_name(7, 101)
    ('frame_00.gif', 'frame_99.gif', 'frame_007.gif')
    """
    if not 0 <= index < count:
        raise ValueError(f"index must be in range(count={count}), got {index!r}")
    width = max(2, len(str(count - 1)))
    return f"frame_{index:0{width}d}.gif"
