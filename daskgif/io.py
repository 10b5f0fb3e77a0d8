"""Every byte daskgif reads or writes, through fsspec.

A path is anything fsspec opens: a local path, ``file://``, ``https://``, ``s3://``,
``memory://`` (per process), ...  Writes are atomic: data appears under its final name
only once complete, under a temporary name that says which host and process wrote it
(:func:`remove_stale_parts` clears a killed writer's).  A fetched data file has a record of
its source next to it (:func:`fetch_needed` reads it) and, while a run fetches it, a lock
(:func:`lock`).  Settings are arguments: callers read ``dask.config`` on the client.

``storage_options`` are passed to fsspec.  When the two ends of a copy need different
options, nest them under the protocol name (``{"s3": {"key": ...}, "https": {...}}``);
top-level options are used for both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import hashlib
import json
import logging
import os
import re
import socket
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO, ContextManager

import fsspec
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from .errors import FetchError, LockTimeout
from .redact import mask
from .retry import is_transient

__all__ = [
    "LockTimeout", "SpanReader", "append_bytes", "atomic_write", "exists", "fetch_file", "fetch_needed",
    "frame_name", "join_path", "local_path", "lock", "open_input", "read_source", "read_span", "read_spans",
    "remove_stale_frames", "remove_stale_parts", "source_path", "write_bytes",
]  # fmt: skip

logger = logging.getLogger(__name__)


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


def local_path(path: str) -> str | None:
    """The plain file-system path of *path* when it is local, else ``None``.

    Local paths skip fsspec's URL parsing, which costs more than the I/O of a small frame.

    >>> local_path("a/b.gif"), local_path("file:///tmp/b.gif"), local_path("s3://bucket/b.gif")
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
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Copy *url* to *data_file*, chunk by chunk, atomically, and record where it came from.

    The bytes go to a temporary file that takes the final name only once the
    copy is complete (see :func:`atomic_write`), so no partial *data_file*
    ever appears, whatever the failure (``KeyboardInterrupt`` included).
    Then a record of the source is written next to it (see :func:`source_path`),
    which :func:`fetch_needed` reads to tell whether *data_file* is what *url* gives.

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
        The largest accepted download; a larger one fails and leaves nothing.  A
        larger declared size (HTTP ``Content-Length``) is refused before the body is read.
    allowed_protocols : collection of str, optional
        Protocols accepted for *url* (a plain path is ``file``); another one
        is refused before any I/O, and so is an HTTP redirect to another one.
        ``None`` accepts all.
    deadline : float, optional
        Seconds the whole download may take, however steadily the bytes come
        (``daskgif.fetch-deadline``).  ``None``: no bound but *timeout*.
    clock : callable, optional
        Monotonic seconds, for the deadline; injectable for tests.

    Returns
    -------
    int
        Number of bytes copied.

    Raises
    ------
    FetchError
        Naming *url*.  ``transient`` is :func:`daskgif.retry.is_transient` of the
        cause: true for connection errors, timeouts (the deadline included), a body
        shorter than its ``Content-Length`` and HTTP 5xx/408/425/429; false for other
        HTTP statuses, missing files, bad or refused URLs and redirects, and
        downloads larger than *max_bytes*.
    OSError
        Writing *data_file* failed (disk full, read-only, permission denied, ...).
    """
    if not isinstance(url, str) or not url:
        raise FetchError(repr(url), f"url must be a non-empty string, got {url!r}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if deadline is not None and not deadline > 0:
        raise ValueError(f"deadline must be a positive number of seconds or None, got {deadline!r}")
    start = clock()
    allowed = None if allowed_protocols is None else tuple(sorted({p.lower() for p in allowed_protocols}))
    protocols = _protocols(url)
    if allowed is not None:
        for p in (p for p in protocols if p.lower() not in allowed):
            raise FetchError(url, f"protocol {p!r} is not allowed (daskgif.allowed-protocols: {', '.join(allowed)})")

    def error(e: BaseException, copied: int | None = None) -> FetchError:
        return _fetch_error(url, e, timeout=timeout, deadline=deadline, elapsed=clock() - start, copied=copied)

    try:
        fs, path, http = _source_fs(url, storage_options, timeout=timeout, deadline=deadline, allowed=allowed)
        # block_size=0 streams; the size hint skips fsspec's HEAD/GET probe, which
        # costs requests and turns every failed status into FileNotFoundError.
        source = fs.open(path, "rb", **({"block_size": 0, "size": -1} if http else {}))
    except Exception as e:
        raise error(e) from e
    copied = 0
    with source as src:
        declared, exact = _declared_size(src)
        if max_bytes is not None and declared is not None and declared > max_bytes:
            raise FetchError(url, f"larger than max_bytes={max_bytes} (daskgif.max-bytes): "
                                  f"it declares {declared} bytes")
        # The old record goes first: a data file without one is fetched again (see fetch_needed).
        _remove(source_path(data_file), storage_options)
        with atomic_write(data_file, storage_options) as dst:
            while True:
                if deadline is not None and clock() - start >= deadline:
                    raise _deadline_error(url, deadline, copied)
                want = chunk_size if max_bytes is None else min(chunk_size, max_bytes - copied + 1)
                try:
                    chunk = src.read(want)
                except Exception as e:
                    raise error(e, copied) from e
                if not chunk:
                    lost = _connection_error(src)
                    if lost is not None:
                        raise FetchError(url, f"connection lost after {copied} bytes, before the end of the body "
                                              f"(no Content-Length): {lost}", transient=True)
                    if exact and declared is not None and copied < declared:
                        raise FetchError(url, f"the body ended after {copied} of its {declared} bytes "
                                              "(Content-Length)", transient=True)
                    break
                copied += len(chunk)
                if max_bytes is not None and copied > max_bytes:
                    raise FetchError(url, f"larger than max_bytes={max_bytes} (daskgif.max-bytes)")
                dst.write(chunk)
        record = source_record(url, copied, _validators(src), now=datetime.datetime.now(datetime.timezone.utc))
    with atomic_write(source_path(data_file), storage_options) as f:
        f.write(json.dumps(record, indent=1).encode())
    logger.debug("Fetched %d bytes from %s to %s", copied, mask(url), data_file)
    return copied


def _source_fs(url: str, storage_options: dict | None, *, timeout: float, deadline: float | None = None,
               allowed: tuple[str, ...] | None = None) -> tuple[Any, str, bool]:
    """The fsspec filesystem and path of *url*, and whether it is HTTP(S), with daskgif's HTTP settings."""
    options = _options(url, storage_options)
    http = _protocols(url)[-1] in ("http", "https")
    if http:
        import aiohttp

        # sock_read bounds a stall; total (aiohttp counts the body in it) bounds the whole download.
        limits = aiohttp.ClientTimeout(total=deadline, sock_read=timeout, sock_connect=timeout)
        client_kwargs = {"timeout": limits, "response_class": _response_class(), **(options.get("client_kwargs") or {})}
        if allowed is not None:
            client_kwargs["trace_configs"] = [*client_kwargs.get("trace_configs", ()), _redirect_guard(allowed)]
        options["client_kwargs"] = client_kwargs
    fs, path = url_to_fs(url, **options)
    return fs, path, http


class _RedirectRefused(Exception):
    """An HTTP redirect to a protocol that is not allowed (raised inside aiohttp, turned into a FetchError)."""

    def __init__(self, source: str, target: str, protocol: str, allowed: tuple[str, ...]):
        super().__init__(source, target, protocol, allowed)
        self.source, self.target, self.protocol, self.allowed = source, target, protocol, allowed

    def __str__(self) -> str:
        return (f"redirected from {self.source} to {self.target}: protocol {self.protocol!r} is not allowed "
                f"(daskgif.allowed-protocols: {', '.join(self.allowed)})")


@functools.lru_cache(maxsize=None)
def _redirect_guard(allowed: tuple[str, ...]) -> Any:
    """An aiohttp trace config that refuses, before it is followed, a redirect to a protocol not in *allowed*.

    Cached, so that fsspec's filesystem cache (keyed by the options' text) keeps one session per setting.
    """
    import aiohttp
    from urllib.parse import urljoin, urlsplit

    async def on_request_redirect(session, context, params) -> None:  # type: ignore[no-untyped-def]
        response = params.response
        try:
            target = urljoin(str(response.url), response.headers.get("Location", ""))
            scheme = urlsplit(target).scheme.lower()
        except ValueError:
            return  # aiohttp refuses a malformed Location itself
        if scheme not in allowed:
            response.close()
            raise _RedirectRefused(str(response.url), target, scheme, allowed)

    guard = aiohttp.TraceConfig()
    guard.on_request_redirect.append(on_request_redirect)
    guard.freeze()
    return guard


def _declared_size(source: object) -> tuple[int | None, bool]:
    """The size *source* declares before its body is read, and whether the body must have exactly that size.

    An HTTP ``Content-Length`` is exact unless the body is encoded (aiohttp decodes
    gzip, so more bytes come than were declared); a declared size is a lower bound then.
    """
    response = getattr(source, "r", None)
    if response is not None and hasattr(response, "content_length"):
        length = response.content_length
        encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        return length, length is not None and not encoded
    size = getattr(source, "size", None)
    return (size if isinstance(size, int) and size >= 0 else None), False


def _validators(source: object) -> dict[str, str | None]:
    """The HTTP validators (``ETag``, ``Last-Modified``) of the response behind *source*, if any."""
    headers = getattr(getattr(source, "r", None), "headers", None) or {}
    return {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")}


def _deadline_error(url: str, deadline: float, copied: int | None = None) -> FetchError:
    got = "" if copied is None else f" ({copied} bytes copied)"
    return FetchError(url, f"not finished within the deadline of {deadline} s{got} (daskgif.fetch-deadline)",
                      transient=is_transient(TimeoutError()))


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
    if response is None or closed is None or response.content_length is not None:
        return None
    if "chunked" in response.headers.get("Transfer-Encoding", "").lower():
        return None  # aiohttp checks the end of a chunked body itself
    if not closed.done() or closed.cancelled():
        return None
    error = closed.exception()
    return None if error is None else (error.__cause__ or error)


def _fetch_error(url: str, e: BaseException, *, timeout: float, deadline: float | None = None,
                 elapsed: float = 0.0, copied: int | None = None) -> FetchError:
    """Describe *e*, raised while fetching *url*; :func:`daskgif.retry.is_transient` decides ``transient``."""
    import aiohttp

    if isinstance(e, FetchError):
        return e
    if isinstance(e, _RedirectRefused):
        return FetchError(url, str(e))
    transient = is_transient(e)
    timed_out = isinstance(e, (TimeoutError, asyncio.TimeoutError))
    if timed_out and deadline is not None and elapsed >= deadline:
        return _deadline_error(url, deadline, copied)
    if isinstance(e, aiohttp.ClientResponseError):
        return FetchError(url, f"HTTP {e.status} {e.message}".strip(), transient)
    if isinstance(e, aiohttp.InvalidURL):
        return FetchError(url, f"bad URL: {e}", transient)
    if timed_out:
        return FetchError(url, f"timed out: no data for {timeout} s (daskgif.fetch-timeout)", transient)
    if isinstance(e, FileNotFoundError):
        # fsspec's HTTP filesystem raises it for a 404, without the status.
        http = _protocols(url)[-1] in ("http", "https")
        return FetchError(url, "HTTP 404 Not Found" if http else "no such file", transient)
    if isinstance(e, (ValueError, ImportError)) and not isinstance(e, aiohttp.ClientError):
        return FetchError(url, f"bad URL: {e}", transient)
    return FetchError(url, f"{type(e).__name__}: {e}", transient)


def exists(path: str, storage_options: dict | None = None) -> bool:
    """Whether *path* exists.

    >>> exists("memory://daskgif-doctest/missing.img")
    False
    """
    fs, p = url_to_fs(path, **_options(path, storage_options))
    return fs.exists(p)


def source_path(data_file: str) -> str:
    """Where the record of *data_file*'s source is kept: next to it, with ``.source.json`` appended.

    >>> source_path("s3://bucket/image-data.img")
    's3://bucket/image-data.img.source.json'
    """
    return data_file + ".source.json"


def url_digest(url: str) -> str:
    """The SHA-256 of *url*, in hex: how a record names its URL without keeping secrets in it.

    >>> url_digest("https://h/a.img")[:16]
    '04eda8b868a5e6d5'
    """
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def source_record(url: str, size: int, validators: dict[str, str | None] | None = None, *,
                  now: datetime.datetime) -> dict[str, Any]:
    """The record of a fetch of *size* bytes from *url*, as written next to the data file.

    The URL is kept as its digest (it may hold a token) and masked, for humans.

    >>> from datetime import datetime, timezone
    >>> now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> record = source_record("https://me:pw@h/a.img", 3, {"etag": '"x1"'}, now=now)
    >>> record["url"], record["size"], record["etag"], record["last_modified"], record["fetched_at"]
    ('https://me:***@h/a.img', 3, '"x1"', None, '2026-01-02T00:00:00+00:00')
    >>> record["url_sha256"] == url_digest("https://me:pw@h/a.img")
    True
    """
    validators = validators or {}
    return {"url_sha256": url_digest(url), "url": mask(url), "size": size, "etag": validators.get("etag"),
            "last_modified": validators.get("last_modified"), "fetched_at": now.isoformat()}


def read_source(data_file: str, storage_options: dict | None = None) -> dict[str, Any] | None:
    """The record of where *data_file* came from, or ``None`` when it has none (or an unreadable one)."""
    path = source_path(data_file)
    try:
        with open_input(path, storage_options) as f:
            record = json.loads(f.read())
    except FileNotFoundError:
        return None
    except ValueError as e:  # not JSON: treated as no record, so the data is fetched again
        logger.warning("Ignoring %s, which is not a source record: %s", path, e)
        return None
    return record if isinstance(record, dict) else None


def fetch_needed(
    url: str,
    data_file: str,
    storage_options: dict | None = None,
    *,
    check_remote: bool,
    timeout: float = 60,
    allowed_protocols: Collection[str] | None = None,
) -> str | None:
    """Why *data_file* must be fetched from *url*, or ``None`` when the existing file is what *url* gave.

    The existing *data_file* is kept when its record (see :func:`source_path`,
    written by :func:`fetch_file`) names the same URL and its size, and, with
    *check_remote* for an HTTP(S) URL, a ``HEAD`` shows the recorded ``ETag``
    (or, without one, ``Last-Modified``).  A server that cannot be asked, or
    that sends neither validator, keeps the file (a warning is logged for a
    failed ``HEAD``): a run works offline on what it fetched before.

    A *data_file* without a record (written by an older daskgif or put there by
    hand) is fetched again, unless *url* is a local path to *data_file* itself.

    Parameters
    ----------
    url : str
        The URL of the run.
    data_file : str
        Where the data is kept.
    storage_options : dict, optional
        fsspec options, as for :func:`fetch_file`.
    check_remote : bool
        Ask an HTTP(S) server whether the data changed (one ``HEAD`` request).
    timeout : float, optional
        Seconds the ``HEAD`` may stall (``daskgif.fetch-timeout``).
    allowed_protocols : collection of str, optional
        As for :func:`fetch_file`: a redirect elsewhere counts as a failed ``HEAD``.

    Returns
    -------
    str or None
        A one-line reason naming *data_file*, or ``None``.

    Examples
    --------
    >>> with atomic_write("memory://doc/a.img") as f:
    ...     _ = f.write(b"data")
    >>> fetch_needed("memory://doc/a.img", "memory://doc/data.img", check_remote=False)
    'memory://doc/data.img does not exist; fetching memory://doc/a.img'
    >>> _ = fetch_file("memory://doc/a.img", "memory://doc/data.img")
    >>> fetch_needed("memory://doc/a.img", "memory://doc/data.img", check_remote=False)
    >>> fetch_needed("memory://doc/b.img", "memory://doc/data.img", check_remote=False)
    'memory://doc/data.img came from another URL (memory://doc/a.img); fetching memory://doc/b.img'
    """
    shown = mask(url)
    fs, path = url_to_fs(data_file, **_options(data_file, storage_options))
    try:
        size = fs.size(path)
    except FileNotFoundError:
        return f"{data_file} does not exist; fetching {shown}"
    record = read_source(data_file, storage_options)
    if record is None:
        if _same_local_file(url, data_file):
            return None
        return f"{data_file} has no record of its source ({source_path(data_file)}); fetching {shown}"
    if record.get("url_sha256") != url_digest(url):
        return f"{data_file} came from another URL ({record.get('url')}); fetching {shown}"
    if record.get("size") != size:
        return f"{data_file} has {size} bytes, not the {record.get('size')} fetched from {shown}; fetching it again"
    if check_remote and _protocols(url)[-1] in ("http", "https"):
        return _remote_change(url, record, storage_options, timeout=timeout, allowed_protocols=allowed_protocols)
    return None


def _remote_change(url: str, record: dict[str, Any], storage_options: dict | None, *, timeout: float,
                   allowed_protocols: Collection[str] | None) -> str | None:
    """Why the server's validators for *url* differ from *record*'s, or ``None``."""
    allowed = None if allowed_protocols is None else tuple(sorted({p.lower() for p in allowed_protocols}))
    try:
        fs, path, _ = _source_fs(url, storage_options, timeout=timeout, deadline=None, allowed=allowed)
        info = fs.info(path)
    except Exception as e:
        logger.warning("Keeping the data fetched from %s: cannot ask the server whether it changed: %s",
                       mask(url), _fetch_error(url, e, timeout=timeout).message)
        return None
    for field, header in (("etag", "ETag"), ("last_modified", "Last-Modified")):
        old, new = record.get(field), info.get(header)
        if old and new:
            if old == new:
                return None
            return f"the server reports a change ({header} {old} -> {new}); fetching {mask(url)}"
    return None


def _same_local_file(url: str, data_file: str) -> bool:
    """Whether *url* and *data_file* are the same local file."""
    a, b = local_path(url), local_path(data_file)
    if a is None or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _remove(path: str, storage_options: dict | None) -> None:
    """Remove *path* if it exists."""
    local = local_path(path)
    try:
        if local is not None:
            os.unlink(local)
        else:
            fs, p = url_to_fs(path, **_options(path, storage_options))
            fs.rm_file(p)
    except FileNotFoundError:
        pass


@contextmanager
def lock(
    data_file: str,
    storage_options: dict | None = None,
    *,
    owner: str,
    timeout: float,
    max_age: float | None = 86400,
    poll: float = 0.1,
) -> Iterator[dict[str, Any]]:
    """Hold ``<data_file>.lock`` for the block, so that two runs never fetch into one data file at once.

    The lock file is created exclusively (locally ``O_CREAT | O_EXCL``; elsewhere
    fsspec's ``"xb"`` mode, and where a filesystem lacks it, a check-then-write
    that is only a best effort) and holds the holder's host, pid, run id and start.
    It is removed on leaving the block, if it is still this holder's.

    While another live run holds it, this waits up to *timeout* seconds.  A stale
    lock is broken, with a warning: one written on this host by a process that is
    gone, or one older than *max_age* seconds.

    Parameters
    ----------
    data_file : str
        The file the lock guards (any fsspec path).
    storage_options : dict, optional
        fsspec options.
    owner : str
        The run id of the holder, shown to the runs that wait.
    timeout : float
        Seconds to wait for another run's lock (``daskgif.lock-timeout``).
    max_age : float, optional
        Seconds after which any lock counts as stale (``daskgif.lock-max-age``); ``None``: never.
    poll : float, optional
        Seconds between two looks at a held lock.

    Yields
    ------
    dict
        What the lock file holds.

    Raises
    ------
    LockTimeout
        Naming the lock file and the holder, when it was held for all of *timeout*.

    Examples
    --------
    >>> with lock("memory://daskgif-doctest/l.img", owner="run-1", timeout=1) as held:
    ...     held["owner"], exists("memory://daskgif-doctest/l.img.lock")
    ('run-1', True)
    >>> exists("memory://daskgif-doctest/l.img.lock")
    False
    """
    path = data_file + ".lock"
    now = time.time()
    mine = {"host": _host(), "pid": os.getpid(), "owner": owner, "started": now,
            "started_at": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(),
            "token": uuid.uuid4().hex}
    content = json.dumps(mine).encode()
    give_up = time.monotonic() + timeout
    while not _create_exclusive(path, content, storage_options):
        holder, age = _read_lock(path, storage_options)
        if holder is None:
            continue  # released meanwhile
        stale = _stale_lock(holder, age, max_age)
        if stale:
            logger.warning("Breaking the stale lock %s of run %s (host %s, pid %s): %s", path,
                           holder.get("owner"), holder.get("host"), holder.get("pid"), stale)
            if _read_lock(path, storage_options)[0] == holder:  # not taken over meanwhile
                _remove(path, storage_options)
            if _create_exclusive(path, content, storage_options):
                break
            holder, age = _read_lock(path, storage_options)  # another run was quicker
            if holder is None:
                continue
        if time.monotonic() >= give_up:
            raise LockTimeout(path, holder or {"owner": "unknown (unreadable lock file)"}, timeout)
        time.sleep(max(0.0, min(poll, give_up - time.monotonic())))
    try:
        yield mine
    finally:
        if (_read_lock(path, storage_options)[0] or {}).get("token") == mine["token"]:
            _remove(path, storage_options)
        else:
            logger.warning("The lock %s was taken from run %s while it held it", path, owner)


def _create_exclusive(path: str, content: bytes, storage_options: dict | None) -> bool:
    """Create *path* holding *content* unless it exists; whether it was created."""
    local = local_path(path)
    if local is not None:
        directory = os.path.dirname(local)
        if directory:
            os.makedirs(directory, exist_ok=True)
        try:
            fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        return True
    fs, p = url_to_fs(path, **_options(path, storage_options))
    try:
        with fs.open(p, "xb") as f:
            f.write(content)
        return True
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError, TypeError):
        pass  # no exclusive create here: a best effort, racy between the check and the write
    if fs.exists(p):
        return False
    fs.pipe_file(p, content)
    return True


def _read_lock(path: str, storage_options: dict | None) -> tuple[dict | None, float | None]:
    """The holder written in lock file *path* and the lock's age in seconds; ``(None, None)`` when there is none.

    A lock file that cannot be parsed (being written) gives ``({}, age)``.
    """
    try:
        with open_input(path, storage_options) as f:
            data = f.read()
    except FileNotFoundError:
        return None, None
    try:
        holder = json.loads(data)
    except ValueError:
        holder = None
    if isinstance(holder, dict) and isinstance(holder.get("started"), (int, float)):
        return holder, time.time() - holder["started"]
    try:  # unreadable: its age is its modification time's
        fs, p = url_to_fs(path, **_options(path, storage_options))
        modified = fs.modified(p).timestamp()
    except (OSError, NotImplementedError):
        modified = time.time()
    return {}, time.time() - modified


def _stale_lock(holder: dict | None, age: float | None, max_age: float | None) -> str | None:
    """Why the lock of *holder*, *age* seconds old, is stale, or ``None`` while it is live.

    >>> _stale_lock({"host": _host(), "pid": os.getpid()}, 5.0, 60) is None
    True
    >>> _stale_lock({"host": "elsewhere", "pid": 1}, 90.0, 60)
    'older than 60 s (daskgif.lock-max-age)'
    """
    holder = holder or {}
    pid = holder.get("pid")
    if holder.get("host") == _host() and isinstance(pid, int) and not _alive(pid):
        return f"its process (pid {pid}) is gone"
    if max_age is not None and age is not None and age > max_age:
        return f"older than {max_age} s (daskgif.lock-max-age)"
    return None


def _host() -> str:
    """This machine's name, as written into temporary file names and locks (no ``/``, no spaces)."""
    name = socket.gethostname()
    if name != _host_cache[0]:  # cached: a frame's write would otherwise clean the name every time
        _host_cache[:] = [name, re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "localhost"]
    return _host_cache[1]


_host_cache = ["", ""]


def part_name(name: str) -> str:
    """A fresh temporary name for a file being written as *name*: ``.<name>.<host>-<pid>-<hex>.part``.

    Host and process are in the name so that :func:`remove_stale_parts` can tell a
    dead writer's leftovers from a live writer's file.

    >>> n = part_name("clip.gif")
    >>> n.startswith(".clip.gif.") and n.endswith(f"-{os.getpid()}-" + n[-37:-5] + ".part")
    True
    """
    return f".{name}.{_host()}-{os.getpid()}-{uuid.uuid4().hex}.part"


_PART = re.compile(r"\.(?P<rest>.+)-(?P<pid>\d+)-(?P<hex>[0-9a-f]{32})\.part")

#: The name under which files for object stores and ``memory://`` are written locally before the upload.
UPLOAD_NAME = "daskgif-upload"


def part_owner(part: str, host: str | None = None) -> tuple[str, int] | None:
    """The destination name and writer pid of temporary file *part*, when written on *host* (default: this one).

    ``None`` for another host's or an older daskgif's temporary file, or another file.

    >>> part_owner(".frame_00.gif.node-1.lan-4242-" + "ab" * 16 + ".part", host="node-1.lan")
    ('frame_00.gif', 4242)
    >>> part_owner(".frame_00.gif.other-4242-" + "ab" * 16 + ".part", host="node-1.lan") is None
    True
    """
    m = _PART.fullmatch(part)
    host = _host() if host is None else host
    if m is None or not m["rest"].endswith("." + host):
        return None
    return m["rest"][: -len(host) - 1], int(m["pid"])


def _alive(pid: int) -> bool:
    """Whether process *pid* of this machine is running (a process of another user counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - no such signal support: assume alive, the safe side
        return True
    return True


def remove_stale_parts(directory: str, prefix: str | None = None, *, max_age: float | None = 86400) -> list[str]:
    """Remove the temporary files that killed writers left in local *directory*; return their paths.

    A temporary file of :func:`atomic_write` (``.<name>.<host>-<pid>-<hex>.part``)
    is stale when it was written on this host by a process that is gone, or, from any
    host or an older daskgif (``.<name>.<hex>.part``), when it was not modified for
    *max_age* seconds.  A live writer's file is never removed.

    Parameters
    ----------
    directory : str
        A local folder (a plain path or ``file://``).  Other URLs hold no temporary
        files: their data is written in the local temporary folder first, under
        :data:`UPLOAD_NAME` (``remove_stale_parts(tempfile.gettempdir(), UPLOAD_NAME)``).
    prefix : str, optional
        Only temporary files for destinations whose names start with *prefix*
        (``"image-data.img"`` for a data file and its record, ``"frame_"`` for frames).
    max_age : float, optional
        Seconds without a write after which any temporary file is stale; ``None``: only dead writers'.

    Examples
    --------
    >>> remove_stale_parts("s3://bucket/frames")
    []
    """
    local = local_path(directory)
    if local is None:
        return []
    try:
        names = os.listdir(local or ".")
    except FileNotFoundError:
        return []
    now, host, removed = time.time(), _host(), []
    for part in names:
        if not (part.startswith(".") and part.endswith(".part")) or (prefix and not part.startswith("." + prefix)):
            continue
        path = os.path.join(local, part)
        owner = part_owner(part, host)
        if owner is not None and owner[1] != os.getpid() and not _alive(owner[1]):
            why = f"its writer, pid {owner[1]} on {host}, is gone"
        else:
            try:
                age = now - os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            if max_age is None or age < max_age or (owner is not None and owner[1] == os.getpid()):
                continue
            why = f"not written for {age:.0f} s (max_age={max_age})"
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        logger.info("Removed stale temporary file %s: %s", path, why)
        removed.append(path)
    return removed


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


@contextmanager
def atomic_write(path: str, storage_options: dict | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file whose data appears at *path* only if the block succeeds.

    Locally the data goes to ``.<name>.<host>-<pid>-<hex>.part`` (see :func:`part_name`)
    in the same directory, renamed over *path* with :func:`os.replace` once complete.
    Elsewhere (object stores, ``memory://``) it goes to a local temporary file
    (named the same way after :data:`UPLOAD_NAME`) uploaded with ``put_file`` once
    complete, so no partial object is ever visible.  Missing local parent directories
    are created.  On error (``KeyboardInterrupt`` included) the temporary file is
    removed and an existing *path* is untouched; a killed process leaves it, for
    :func:`remove_stale_parts`.

    Parameters
    ----------
    path : str
        Destination, any writable fsspec path.
    storage_options : dict, optional
        fsspec options.

    Raises
    ------
    OSError
        With its ``errno`` (``EROFS``, ``EACCES``, ``ENOSPC``, ...), naming *path*
        when the temporary file cannot be created.

    Examples
    --------
    >>> with atomic_write("memory://daskgif-doctest/a.bin") as f:
    ...     _ = f.write(b"data")
    >>> read_span("memory://daskgif-doctest/a.bin", 1, 2)
    b'at'
    """
    p = local_path(path)
    if p is None:
        fs, p = url_to_fs(path, **_options(path, storage_options))
        local = isinstance(fs, LocalFileSystem)
    else:
        local = True
    if local:
        directory, name = os.path.split(p)
        tmp = os.path.join(directory, part_name(name))
    else:
        directory, tmp = "", os.path.join(tempfile.gettempdir(), part_name(UPLOAD_NAME))
    # The local copy of an upload is for this user's eyes only, as mkstemp's would be.
    opener = None if local else _private
    try:
        try:
            f = open(tmp, "xb", opener=opener)
        except OSError as e:
            # Missing parents are made when the open fails: a makedirs per frame costs a syscall each.
            # (A bare file name lives in the working directory, which exists; another thread may
            # have made the folder since this open failed.)
            if not directory or (not isinstance(e, FileNotFoundError) and os.path.isdir(directory)):
                raise
            os.makedirs(directory, exist_ok=True)
            f = open(tmp, "xb", opener=opener)
    except OSError as e:  # the errno decides whether to retry (EROFS and EACCES: no); the message names *path*
        raise type(e)(e.errno, e.strerror, path) from e
    done = False
    try:
        with f:
            yield f
        # No fsync: the rename is atomic against a crash or kill of the process, which is the
        # promise; an fsync per frame made writing 1,000 small frames four times slower.
        if local:
            try:
                os.replace(tmp, p)
            except OSError as e:  # name the destination, not the temporary file (a folder in its way, ...)
                raise type(e)(e.errno, e.strerror, path) from None
            done = True
        else:
            fs.put_file(tmp, p)
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
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


#: Filesystems whose files can be appended to in place; elsewhere an append rewrites the object.
APPENDABLE = ("file", "local", "memory")


def append_bytes(path: str, data: bytes, storage_options: dict | None = None) -> None:
    """Append *data* to *path*, creating it (and its local folders) if needed.

    On local disk (and ``memory://``) one write in append mode, so concurrent
    writers' lines stay whole; on object stores the object is rewritten
    atomically with *data* added (a store has no append).

    >>> append_bytes("memory://daskgif-doctest/h.jsonl", b"1\\n")
    >>> append_bytes("memory://daskgif-doctest/h.jsonl", b"2\\n")
    >>> read_span("memory://daskgif-doctest/h.jsonl", 0, 4)
    b'1\\n2\\n'
    """
    fs, fspath = url_to_fs(path, **_options(path, storage_options))
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    if any(p in APPENDABLE for p in protocols):
        parent = fs._parent(fspath)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(fspath, "ab") as f:
            f.write(data)
        return
    old = fs.cat_file(fspath) if fs.exists(fspath) else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    with atomic_write(path, storage_options) as f:
        f.write(old + data)


def read_span(path: str, offset: int, length: int, storage_options: dict | None = None) -> bytes:
    """Read *length* bytes of *path* from *offset*; ``EOFError`` if the file ends first.

    >>> with atomic_write("memory://daskgif-doctest/c.bin") as f:
    ...     _ = f.write(b"0123456789")
    >>> read_span("memory://daskgif-doctest/c.bin", 3, 4)
    b'3456'
    """
    local = local_path(path)
    if local is None:
        with open_input(path, storage_options) as f:
            return _read_at(f, path, offset, length)
    fd = os.open(local, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        return _pread(fd, path, offset, length)
    finally:
        os.close(fd)


def _pread(fd: int, path: str, offset: int, length: int) -> bytes:
    """Read a span of open file *fd* without moving its position: threads may share *fd*."""
    if offset < 0 or length < 0:
        raise ValueError(f"span must have offset >= 0 and length >= 0, got {(offset, length)!r}")
    data = os.pread(fd, length, offset)
    while len(data) < length:  # a short read is allowed (signals, network file systems): read on
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            raise EOFError(f"{path}: expected {length} bytes at offset {offset}, got {len(data)}")
        data += more
    return data


class SpanReader:
    """Read spans of one file, opening it once per thread: what a batch of frames reads from the data file.

    Locally each thread opens the file on its first read and reads it with
    ``os.pread``; :meth:`release` closes the calling thread's file (a batch
    calls it when it ends, see :func:`daskgif.tasks.run_items`).  Elsewhere
    each read opens the file (fsspec), as :func:`read_span` does.  A reader
    pickles as its path and options.

    >>> with atomic_write("memory://daskgif-doctest/g.bin") as f:
    ...     _ = f.write(b"0123456789")
    >>> SpanReader("memory://daskgif-doctest/g.bin").read(2, 3)
    b'234'
    """

    def __init__(self, path: str, storage_options: dict | None = None):
        self.path, self.storage_options = path, storage_options
        self.local = local_path(path) if hasattr(os, "pread") else None
        self._mine = threading.local()

    def __reduce__(self) -> Any:
        return (SpanReader, (self.path, self.storage_options))

    def __repr__(self) -> str:
        return f"SpanReader({mask(self.path)!r})"

    def read(self, offset: int, length: int) -> bytes:
        """Return *length* bytes from *offset*; ``EOFError`` if the file ends first."""
        if self.local is None:
            return read_span(self.path, offset, length, self.storage_options)
        f = getattr(self._mine, "file", None)
        if f is None:
            f = self._mine.file = open(self.local, "rb", buffering=0)
        return _pread(f.fileno(), self.path, offset, length)

    def release(self) -> None:
        """Close the calling thread's file, if open; a later read opens it again."""
        f = self._mine.__dict__.pop("file", None)
        if f is not None:
            f.close()


def write_bytes(path: str, data: bytes, storage_options: dict | None = None) -> bool:
    """Write *data* to *path* atomically, unless *path* already holds exactly *data*.

    Returns whether the file was written.  An identical local file is left as it
    is (its time stamps too): re-running a pipeline over the same frames rewrites
    nothing, and renaming over an existing file costs a flush on many file systems.

    >>> write_bytes("memory://daskgif-doctest/e.bin", b"abc")
    True
    """
    local = local_path(path)
    if local is not None:
        try:
            st = os.stat(local)  # one stat: the common case is a fresh folder, where it fails at once
        except OSError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == len(data):
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


FRAME_NAME = re.compile(r"frame_(\d+)\.gif")


def list_sizes(directory: str, storage_options: dict | None = None) -> dict[str, int]:
    """The files of *directory* by name, with their sizes: one listing (one request on object storage).

    >>> write_bytes("memory://daskgif-doctest/ls/a.bin", b"abc")
    True
    >>> list_sizes("memory://daskgif-doctest/ls"), list_sizes("memory://daskgif-doctest/none")
    ({'a.bin': 3}, {})
    """
    fs, path = url_to_fs(directory, **_options(directory, storage_options))
    fs.invalidate_cache(path)  # what is there now, not what this process listed before
    try:
        found = fs.ls(path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {f["name"].rstrip("/").rsplit("/", 1)[-1]: f.get("size") or 0 for f in found
            if f.get("type") != "directory"}


def file_identity(path: str, storage_options: dict | None = None) -> dict[str, Any]:
    """What says *path* is still the same file: its size and its version marker (ETag, else mtime).

    One request (``info``); two files with equal identities are taken to hold the same bytes.
    """
    fs, p = url_to_fs(path, **_options(path, storage_options))
    info = fs.info(p)
    marker = next((info[k] for k in ("ETag", "etag", "VersionId", "mtime", "LastModified", "last_modified",
                                     "created") if info.get(k) is not None), None)
    return {"size": info.get("size"), "version": None if marker is None else str(marker)}


def remove_stale_frames(frames_dir: str, count: int, storage_options: dict | None = None,
                        names: Iterable[str] | None = None) -> list[str]:
    """Remove the frame files of an earlier run that are not among this run's *count* frames.

    A run with fewer frames, or with a different number of digits in its names,
    would otherwise leave a mixed set in *frames_dir*.  Only names daskgif writes
    (``frame_<digits>.gif``) are touched; listing the folder costs one request on
    object storage.

    >>> with atomic_write("memory://daskgif-doctest/fr/frame_07.gif") as f:
    ...     _ = f.write(b"GIF89a")
    >>> remove_stale_frames("memory://daskgif-doctest/fr", 3)
    ['memory://daskgif-doctest/fr/frame_07.gif']
    """
    width = len(frame_name(0, count)) if count else 0
    fs, path = url_to_fs(frames_dir, **_options(frames_dir, storage_options))
    if names is None:  # *names*: a listing the caller already made (see list_sizes)
        try:
            names = fs.ls(path, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
    stale = []
    for name in names:
        base = name.rstrip("/").rsplit("/", 1)[-1]
        found = FRAME_NAME.fullmatch(base)
        if found and (len(base) != width or int(found.group(1)) >= count):
            stale.append(join_path(frames_dir, base))
            fs.rm_file(fs._strip_protocol(join_path(frames_dir, base)))
    if stale:
        logger.info("Removed %d frame file(s) of an earlier run from %s", len(stale), frames_dir)
    return stale


def frame_name(index: int, count: int) -> str:
    """File name of frame *index* of *count*, zero-padded so names sort in order.

    >>> frame_name(0, 1), frame_name(99, 100), frame_name(7, 101)
    ('frame_00.gif', 'frame_99.gif', 'frame_007.gif')
    """
    if not 0 <= index < count:
        raise ValueError(f"index must be in range(count={count}), got {index!r}")
    width = max(2, len(str(count - 1)))
    return f"frame_{index:0{width}d}.gif"
