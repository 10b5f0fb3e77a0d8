"""Fetching a URL to the data file (allowed protocols on every hop, limits, deadlines), and whether to fetch it again.

Next to the data file, :func:`fetch_file` writes the record of its source (the URL masked
and as its digest: it may hold a token), which :func:`fetch_needed` reads.
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
import stat
import time
from collections.abc import Callable, Collection
from typing import Any

from fsspec.core import url_to_fs

from daskgif.errors import Cancelled, FetchError, is_transient
from daskgif.redact import mask, mask_secrets_of
from daskgif.storage.files import atomic_write, open_input, remove_file, write_bytes
from daskgif.storage.paths import file_kind, fs_options, local_path, url_protocols, version_of

__all__ = ["fetch_file", "fetch_needed", "read_source", "source_path", "url_digest"]

logger = logging.getLogger(__name__)


def fetch_file(url: str, data_file: str, *, storage_options: dict | None = None, chunk_size: int = 4 * 2**20,
               timeout: float = 60, max_bytes: int | None = None, allowed_protocols: Collection[str] | None = None,
               deadline: float | None = None, clock: Callable[[], float] = time.monotonic,
               stop: Callable[[], bool] | None = None) -> int:
    """Copy *url* (data, never given to a shell) to *data_file* chunk by chunk, atomically, and record its source;
    return the bytes copied.  No partial *data_file* ever appears, whatever the failure.

    *timeout* bounds an HTTP(S) stall and *deadline* the whole download, in seconds of *clock*; a download
    over *max_bytes* is refused (by its ``Content-Length`` before the body is read); *allowed_protocols*
    (``None``: all) are checked before any I/O and on every redirect.  A :class:`~daskgif.errors.FetchError`
    names *url*, ``transient`` for connection errors, timeouts, a body cut short, HTTP 5xx/408/425/429.
    *stop* is asked before each chunk: once it says so, the download ends with :class:`~daskgif.errors.Cancelled`.
    """
    if not isinstance(url, str) or not url:
        raise FetchError(repr(url), f"url must be a non-empty string, got {url!r}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if deadline is not None and not deadline > 0:
        raise ValueError(f"deadline must be a positive number of seconds or None, got {deadline!r}")
    start = clock()
    allowed = _allowed(allowed_protocols)
    for p in url_protocols(url):
        if allowed is not None and p.lower() not in allowed:
            raise FetchError(url, f"protocol {p!r} is not allowed (daskgif.allowed-protocols: {', '.join(allowed)})")
    request: dict[str, Any] = {"url": url, "allowed": allowed}  # filled in by the HTTP trace (see _trace)

    def error(e: BaseException, copied: int | None = None) -> FetchError:
        return _fetch_error(url, e, timeout=timeout, deadline=deadline, elapsed=clock() - start, copied=copied)

    local = local_path(url)
    try:
        mode = os.stat(os.path.expanduser(local)).st_mode if local is not None else stat.S_IFREG
        if not stat.S_ISREG(mode):  # a fifo would block for good, a device never end
            raise FetchError(url, f"is {file_kind(mode)}, not a regular file")
        fs, path = _source_fs(url, storage_options, timeout=timeout, deadline=deadline)
        # block_size=0 streams; the size hint skips fsspec's HEAD/GET probe, which
        # costs requests and turns every failed status into FileNotFoundError.
        http = {"block_size": 0, "size": -1, "trace_request_ctx": request} if _is_http(url) else {}
        # Elsewhere its version marker (ETag, mtime) tells a later run whether it changed (see fetch_needed).
        version = None if http else _version(fs, path)
        source = fs.open(path, "rb", **http)
    except Exception as e:
        raise error(e) from e
    response = request.get("response")
    if response is None:
        size = getattr(source, "size", None)
        declared, exact = (size if isinstance(size, int) and size >= 0 else None), None
    else:  # aiohttp decodes gzip: an encoded body gives more bytes than it declares
        declared = response.content_length
        identity = response.headers.get("Content-Encoding", "identity").lower() in ("", "identity")
        exact = declared if identity else None
    copied = 0
    with source as src:
        if max_bytes is not None and declared is not None and declared > max_bytes:
            raise FetchError(url, f"larger than max_bytes={max_bytes} (daskgif.max-bytes): "
                                  f"it declares {declared} bytes")
        # The old record goes first: a data file without one is fetched again (see fetch_needed).
        remove_file(source_path(data_file), storage_options)
        with atomic_write(data_file, storage_options) as dst:
            while True:
                if stop is not None and stop():
                    raise Cancelled(f"fetching {mask(url)} stopped after {copied} bytes: the run was stopped")
                if deadline is not None and clock() - start >= deadline:
                    raise _deadline_error(url, deadline, copied)
                want = chunk_size if max_bytes is None else min(chunk_size, max_bytes - copied + 1)
                try:
                    chunk = src.read(want)
                except Exception as e:
                    raise error(e, copied) from e
                if not chunk:
                    break
                copied += len(chunk)
                if max_bytes is not None and copied > max_bytes:
                    raise FetchError(url, f"larger than max_bytes={max_bytes} (daskgif.max-bytes)")
                dst.write(chunk)
            _check_end(url, request.get("closed"), copied, exact)
    headers = {} if response is None else response.headers
    record = {"url_sha256": url_digest(url), "url": mask(url), "size": copied, "etag": headers.get("ETag"),
              "last_modified": headers.get("Last-Modified"), "version": version,
              "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    write_bytes(source_path(data_file), json.dumps(record, indent=1).encode(), storage_options)
    logger.debug("Fetched %d bytes from %s to %s", copied, mask(url), data_file)
    return copied


def _allowed(protocols: Collection[str] | None) -> tuple[str, ...] | None:
    return None if protocols is None else tuple(sorted({p.lower() for p in protocols}))


def _is_http(url: str) -> bool:
    return url_protocols(url)[-1] in ("http", "https")


def _check_end(url: str, closed: asyncio.Future | None, copied: int, exact: int | None) -> None:
    """Refuse an HTTP body shorter than its ``Content-Length`` (*exact*) or cut by a lost connection: without a
    length aiohttp reads a reset as the end, which the future of the connection's closing (*closed*) tells apart."""
    lost = closed.exception() if closed is not None and closed.done() and not closed.cancelled() else None
    if lost is not None:
        raise FetchError(url, f"connection lost after {copied} bytes, before the end of the body "
                              f"(no Content-Length): {lost.__cause__ or lost}", transient=True)
    if exact is not None and copied < exact:
        raise FetchError(url, f"the body ended after {copied} of its {exact} bytes (Content-Length)", transient=True)


def _source_fs(url: str, storage_options: dict | None, *, timeout: float,
               deadline: float | None = None) -> tuple[Any, str]:
    """The fsspec filesystem and path of *url*, with daskgif's HTTP settings."""
    options = fs_options(url, storage_options)
    if _is_http(url):
        import aiohttp

        # sock_read bounds a stall; total (aiohttp counts the body in it) bounds the whole download.
        limits = aiohttp.ClientTimeout(total=deadline, sock_read=timeout, sock_connect=timeout)
        client_kwargs = {"timeout": limits, **(options.get("client_kwargs") or {})}
        client_kwargs["trace_configs"] = [*client_kwargs.get("trace_configs", ()), _trace()]
        options["client_kwargs"] = client_kwargs
    return url_to_fs(url, **options)


@functools.lru_cache(maxsize=None)
def _trace() -> Any:
    """The aiohttp trace config of daskgif's HTTP sessions, one object: fsspec caches a session per options text.

    Each request's ``trace_request_ctx`` is a dict: a redirect to a protocol not in its ``allowed`` is refused
    before it is followed; it keeps the ``response`` and, for a body without a length, its connection's
    ``closed`` future."""
    from urllib.parse import urljoin, urlsplit

    import aiohttp

    async def on_request_redirect(session, context, params) -> None:  # type: ignore[no-untyped-def]
        request, response = context.trace_request_ctx, params.response
        if not isinstance(request, dict) or request["allowed"] is None:
            return
        try:
            target = urljoin(str(response.url), response.headers.get("Location", ""))
            scheme = urlsplit(target).scheme.lower()
        except ValueError:
            return  # aiohttp refuses a malformed Location itself
        if scheme not in request["allowed"]:
            response.close()
            raise FetchError(request["url"], f"redirected from {response.url} to {target}: protocol {scheme!r} is "
                                             f"not allowed (daskgif.allowed-protocols: {', '.join(request['allowed'])})")

    async def on_request_end(session, context, params) -> None:  # type: ignore[no-untyped-def]
        request, response = context.trace_request_ctx, params.response
        if not isinstance(request, dict):
            return
        request["response"] = response
        # Sent before the body is read on: its connection is open until its end. (aiohttp checks a chunked end.)
        protocol = None if response.connection is None else response.connection.protocol
        chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
        if protocol is not None and response.content_length is None and not chunked:
            closed = protocol.closed
            if closed is not None:
                closed.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: asyncio logs none
                request["closed"] = closed

    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(on_request_redirect)
    trace.on_request_end.append(on_request_end)
    trace.freeze()
    return trace


def _deadline_error(url: str, deadline: float, copied: int | None = None) -> FetchError:
    got = "" if copied is None else f" ({copied} bytes copied)"
    return FetchError(url, f"not finished within the deadline of {deadline} s{got} (daskgif.fetch-deadline)", True)


def _fetch_error(url: str, e: BaseException, *, timeout: float, deadline: float | None = None,
                 elapsed: float = 0.0, copied: int | None = None) -> FetchError:
    """Describe *e*, raised while fetching *url*; :func:`daskgif.errors.is_transient` decides ``transient``."""
    import aiohttp

    if isinstance(e, FetchError):
        return e
    transient = is_transient(e)
    timed_out = isinstance(e, (TimeoutError, asyncio.TimeoutError))
    if timed_out and deadline is not None and elapsed >= deadline:
        return _deadline_error(url, deadline, copied)
    if isinstance(e, aiohttp.ClientResponseError):
        return FetchError(url, f"HTTP {e.status} {e.message}".strip(), transient)
    if timed_out:
        return FetchError(url, f"timed out: no data for {timeout} s (daskgif.fetch-timeout)", transient)
    if isinstance(e, FileNotFoundError):  # fsspec's HTTP filesystem raises it for a 404, without the status
        return FetchError(url, "HTTP 404 Not Found" if _is_http(url) else "no such file", transient)
    if isinstance(e, aiohttp.InvalidURL) or (isinstance(e, (ValueError, ImportError))
                                              and not isinstance(e, aiohttp.ClientError)):
        return FetchError(url, mask_secrets_of(url, f"bad URL: {e}"), transient)
    # A library's message may quote the URL's parts, credentials included; on one line.
    return FetchError(url, mask_secrets_of(url, " ".join(f"{type(e).__name__}: {e}".split())), transient)


def fetch_needed(url: str, data_file: str, storage_options: dict | None = None, *, check_remote: bool,
                 timeout: float = 60, allowed_protocols: Collection[str] | None = None) -> str | None:
    """Why *data_file* must be fetched from *url*, or ``None`` when the existing file is what *url* gave.

    The file is kept when its record names the same URL and size and, with *check_remote*, the source is
    unchanged: for HTTP(S) a ``HEAD`` shows the recorded ``ETag``, else ``Last-Modified``; elsewhere (a local
    file, object storage) its ETag or modification time is the recorded one.  A source that cannot be asked (a
    warning is logged), or tells neither, keeps it: a run works offline.  A file without a record is fetched
    again, unless *url* is that file.

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
    fs, path = url_to_fs(data_file, **fs_options(data_file, storage_options))
    try:
        size = fs.size(path)
    except FileNotFoundError:
        return f"{data_file} does not exist; fetching {shown}"
    record = read_source(data_file, storage_options)
    if record is None:
        here, there = local_path(url), local_path(data_file)
        with contextlib.suppress(OSError):
            if here is not None and there is not None and os.path.samefile(here, there):
                return None
        return f"{data_file} has no record of its source ({source_path(data_file)}); fetching {shown}"
    if record.get("url_sha256") != url_digest(url):
        return f"{data_file} came from another URL ({record.get('url')}); fetching {shown}"
    if record.get("size") != size:
        return f"{data_file} has {size} bytes, not the {record.get('size')} fetched from {shown}; fetching it again"
    if not check_remote:
        return None
    if not _is_http(url):
        return _changed_source(url, record, storage_options, timeout)
    try:
        fs, path = _source_fs(url, storage_options, timeout=timeout)
        info = fs.info(path, trace_request_ctx={"url": url, "allowed": _allowed(allowed_protocols)})
    except Exception as e:
        logger.warning("Keeping the data fetched from %s: cannot ask the server whether it changed: %s",
                       shown, _fetch_error(url, e, timeout=timeout).message)
        return None
    for field, header in (("etag", "ETag"), ("last_modified", "Last-Modified")):
        old, new = record.get(field), info.get(header)
        if old and new:
            return None if old == new else f"the server reports a change ({header} {old} -> {new}); fetching {shown}"
    return None


def _version(fs: Any, path: str) -> str | None:
    """The version marker of *path* now (its listing cache dropped first), or ``None`` if *fs* tells none."""
    try:
        fs.invalidate_cache(path)
        return version_of(fs.info(path))
    except Exception:  # a file system that opens but cannot describe (data:, ...): no marker
        return None


def _changed_source(url: str, record: dict, storage_options: dict | None, timeout: float) -> str | None:
    """Why the data fetched from the non-HTTP *url* is out of date (its version marker moved), or ``None``."""
    try:
        fs, path = _source_fs(url, storage_options, timeout=timeout)
        fs.invalidate_cache(path)  # what is there now, not what this process listed before
        now = version_of(fs.info(path))
    except Exception as e:  # gone or unreachable: the data file is all there is, and a run works offline
        logger.warning("Keeping the data fetched from %s: cannot check whether it changed: %s", mask(url),
                       _fetch_error(url, e, timeout=timeout).message)
        return None
    then = record.get("version")
    if then is not None and now is not None and then != now:
        return f"{mask(url)} changed since it was fetched ({then} -> {now}); fetching it again"
    return None


def source_path(data_file: str) -> str:
    """Where the record of *data_file*'s source is kept.

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
