"""Fetching a URL to the data file (allowed protocols on every hop, limits, deadlines), and whether to fetch it again."""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import os
import time
from collections.abc import Callable, Collection
from typing import Any

from fsspec.core import url_to_fs

from daskgif.errors import FetchError, is_transient
from daskgif.redact import mask
from daskgif.storage.files import atomic_write, remove_file
from daskgif.storage.paths import fs_options, local_path, url_protocols
from daskgif.storage.source import (
    read_source,
    source_path,
    source_record,
    url_digest,
    write_source,
)

__all__ = ["fetch_file", "fetch_needed"]

logger = logging.getLogger(__name__)


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
        Naming *url*.  ``transient`` is :func:`daskgif.errors.is_transient` of the
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
    protocols = url_protocols(url)
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
        remove_file(source_path(data_file), storage_options)
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
    write_source(data_file, record, storage_options)
    logger.debug("Fetched %d bytes from %s to %s", copied, mask(url), data_file)
    return copied


def _source_fs(url: str, storage_options: dict | None, *, timeout: float, deadline: float | None = None,
               allowed: tuple[str, ...] | None = None) -> tuple[Any, str, bool]:
    """The fsspec filesystem and path of *url*, and whether it is HTTP(S), with daskgif's HTTP settings."""
    options = fs_options(url, storage_options)
    http = url_protocols(url)[-1] in ("http", "https")
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
    from urllib.parse import urljoin, urlsplit

    import aiohttp

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
    """Describe *e*, raised while fetching *url*; :func:`daskgif.errors.is_transient` decides ``transient``."""
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
        http = url_protocols(url)[-1] in ("http", "https")
        return FetchError(url, "HTTP 404 Not Found" if http else "no such file", transient)
    if isinstance(e, (ValueError, ImportError)) and not isinstance(e, aiohttp.ClientError):
        return FetchError(url, f"bad URL: {e}", transient)
    return FetchError(url, f"{type(e).__name__}: {e}", transient)


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
    fs, path = url_to_fs(data_file, **fs_options(data_file, storage_options))
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
    if check_remote and url_protocols(url)[-1] in ("http", "https"):
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
