"""The exceptions daskgif raises, and :func:`is_transient`, the one rule for what is worth retrying.

Each passes all its arguments to ``super().__init__`` (it pickles from a worker to the client) and
subclasses the matching builtin.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

__all__ = ["DaskgifError", "GifFormatError", "FetchError", "RunFailed", "Cancelled", "LockHeld", "TaskTimeout",
           "TRANSIENT_ERRNOS", "TRANSIENT_STATUS", "is_transient"]


class DaskgifError(Exception):
    """Base class of daskgif's own errors; ``transient`` says whether retrying may help."""

    transient = False


class GifFormatError(DaskgifError, ValueError):
    """Bytes that are not the image data they claim to be, at byte *offset* of *frame* when known.

    >>> str(GifFormatError("expected b'GIF8', got b'\\\\x00\\\\x01'", offset=903114, frame=12))
    "frame 12 at byte 903114: expected b'GIF8', got b'\\\\x00\\\\x01'"
    """

    def __init__(self, message: str, offset: int | None = None, frame: int | None = None):
        super().__init__(message, offset, frame)
        self.message, self.offset, self.frame = message, offset, frame

    def __str__(self) -> str:
        where = " ".join(f"{label} {value}" for label, value in (("frame", self.frame), ("at byte", self.offset))
                         if value is not None)
        return f"{where}: {self.message}" if where else self.message

    def locate(self, frame: int | None = None, base: int = 0) -> GifFormatError:
        """Return a copy that names *frame* and counts offsets from *base*.

        >>> str(GifFormatError("bad block", offset=10).locate(frame=3, base=100))
        'frame 3 at byte 110: bad block'
        """
        offset = None if self.offset is None else self.offset + base
        return type(self)(self.message, offset, self.frame if frame is None else frame)


class FetchError(DaskgifError, OSError):
    """A URL (or path) that could not be copied, with the cause, and whether retrying may succeed.

    >>> str(FetchError("https://example.com/x.img", "HTTP 404 Not Found"))
    'cannot fetch https://example.com/x.img: HTTP 404 Not Found'
    """

    def __init__(self, url: str, message: str, transient: bool = False):
        super().__init__(url, message, transient)
        self.url, self.message, self.transient = url, message, transient

    def __str__(self) -> str:
        return f"cannot fetch {self.url}: {self.message}"


class RunFailed(DaskgifError, RuntimeError):
    """A run in which a task failed; *result* is the run's record, *values* those of the mapped items that succeeded.

    >>> import pickle
    >>> error = pickle.loads(pickle.dumps(RunFailed("task 'x' failed after 1 attempt: OSError", None, [1])))
    >>> str(error), error.values
    ("task 'x' failed after 1 attempt: OSError", [1])
    """

    def __init__(self, message: str, result: object = None, values: Iterable = ()):
        super().__init__(message, result, values)
        self.message, self.result, self.values = message, result, list(values)

    def __str__(self) -> str:
        return self.message


class TaskTimeout(DaskgifError, TimeoutError):
    """An attempt of a task that ran past its timeout; transient, so it is retried.

    >>> str(TaskTimeout("write-frame", 2.5, "daskgif.task-timeout.write-frame"))
    "task 'write-frame' ran past its timeout of 2.5 s (daskgif.task-timeout.write-frame); attempt abandoned"
    """

    transient = True

    def __init__(self, name: str, timeout: float, setting: str = "timeout"):
        super().__init__(name, timeout, setting)
        self.name, self.timeout, self.setting = name, timeout, setting

    def __str__(self) -> str:
        return (f"task {self.name!r} ran past its timeout of {self.timeout:g} s ({self.setting}); "
                "attempt abandoned")


class Cancelled(DaskgifError):
    """A run stopped by request (a signal, ``Ctrl-C``) before it finished."""


class LockHeld(DaskgifError, RuntimeError):
    """A file leased to another live run (its ``<file>.lock``, which says *holder*); a run never waits for it.

    >>> holder = {"host": "n1", "pid": 7, "owner": "run-1", "renewed_at": "2026-01-01T00:00:00+00:00"}
    >>> print(LockHeld("d.img.lock", holder, 10))
    d.img.lock is held by run run-1 (host n1, pid 7, renewed 2026-01-01T00:00:00+00:00): two runs never share a data file, a frames folder or an output; give this run other paths, or wait for that run to end (a dead run's lease ends 10 s after its last sign of life, daskgif.lock-timeout)
    """

    def __init__(self, path: str, holder: dict, seconds: float):
        super().__init__(path, holder, seconds)
        self.path, self.holder, self.seconds = path, holder, seconds

    def __str__(self) -> str:
        h = self.holder
        return (f"{self.path} is held by run {h.get('owner')} (host {h.get('host')}, pid {h.get('pid')}, renewed "
                f"{h.get('renewed_at')}): two runs never share a data file, a frames folder or an output; give this "
                f"run other paths, or wait for that run to end (a dead run's lease ends {self.seconds:g} s after its "
                "last sign of life, daskgif.lock-timeout)")


#: ``OSError`` numbers that may go away on their own.
TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.EIO, errno.ETIMEDOUT, errno.ECONNRESET,
                              errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.ENETDOWN, errno.ENETUNREACH,
                              errno.ENETRESET, errno.EHOSTDOWN, errno.EHOSTUNREACH})

#: HTTP statuses that may go away on their own: request timeout, too early, rate limit (and every 5xx).
TRANSIENT_STATUS = frozenset({408, 425, 429})

# Connection and timeout errors of aiohttp and botocore, which are not imported here.
_TRANSIENT_NAMES = frozenset({"ClientConnectionError", "ClientPayloadError", "ServerDisconnectedError",
                              "ServerTimeoutError", "EndpointConnectionError", "ConnectTimeoutError",
                              "ReadTimeoutError", "ConnectionClosedError"})


def is_transient(exc: BaseException) -> bool:
    """Whether trying again may help after *exc*: its ``transient`` attribute, else timeouts, connection errors,
    HTTP 408, 425, 429 and 5xx, and :data:`TRANSIENT_ERRNOS`.

    >>> import errno
    >>> is_transient(ConnectionResetError()), is_transient(TimeoutError())
    (True, True)
    >>> is_transient(OSError(errno.EROFS, "Read-only file system")), is_transient(EOFError())
    (False, False)
    >>> is_transient(OSError(errno.EAGAIN, "Resource temporarily unavailable"))
    True
    >>> import urllib.error
    >>> is_transient(urllib.error.URLError(ConnectionRefusedError())), is_transient(urllib.error.URLError("bad"))
    (True, False)
    """
    transient = getattr(exc, "transient", None)
    if transient is not None:
        return bool(transient)
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException) and reason is not exc:  # urllib's URLError wraps the socket's error
        return is_transient(reason)
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if isinstance(status, int) and 100 <= status < 600:  # an HTTP error (aiohttp's status, urllib's code)
        return status >= 500 or status in TRANSIENT_STATUS
    if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS
