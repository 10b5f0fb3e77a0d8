"""Whether trying again may help, and how long to wait: one rule for every retry in daskgif.

Tasks, the download and the webhook all ask :func:`is_transient`.  It is an
allow-list: connection errors, timeouts, HTTP 408/425/429/5xx and the ``OSError``
numbers that say "busy or unreachable, try later" are transient; everything else
(a read-only or full disk, a missing file, ``EOFError``, ``MemoryError``, a format
error, a bug) fails at once, because trying again gives the same answer.

Only the standard library is imported: errors of optional libraries (aiohttp,
botocore) are recognised by their class names.
"""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass
from typing import Callable

__all__ = ["TRANSIENT_ERRNOS", "TRANSIENT_STATUS", "RetryPolicy", "is_transient"]

#: ``OSError`` numbers that may go away on their own.
TRANSIENT_ERRNOS = frozenset({
    errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.EIO, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED,
    errno.ECONNABORTED, errno.EPIPE, errno.ENETDOWN, errno.ENETUNREACH, errno.ENETRESET, errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
})

#: HTTP statuses that may go away on their own: request timeout, too early, rate limit (and every 5xx).
TRANSIENT_STATUS = frozenset({408, 425, 429})

# Connection and timeout errors of libraries daskgif does not import here (matched by class name).
_TRANSIENT_NAMES = frozenset({
    "ClientConnectionError", "ClientPayloadError", "ServerDisconnectedError", "ServerTimeoutError",
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
})


def is_transient(exc: BaseException) -> bool:
    """Whether trying again may help after *exc*.

    An exception's own ``transient`` attribute decides when it has one (every
    daskgif error does).  Otherwise: timeouts and connection errors, HTTP errors
    with a status of 408, 425, 429 or 5xx, and ``OSError`` numbers in
    :data:`TRANSIENT_ERRNOS` are transient; everything else is permanent.

    Examples
    --------
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


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try again, and how long to wait before each retry.

    The delay grows by *backoff* per retry, is capped at *max_delay*, and is then
    shortened by a random fraction of at most *jitter*, so runs that failed
    together do not retry together.

    Parameters
    ----------
    retries : int
        Attempts after the first.
    retry_delay : float
        Seconds before the first retry.
    backoff : float
        Factor applied to the delay for each further retry.
    max_delay : float
        The longest wait, in seconds (``daskgif.retry-max-delay``).
    jitter : float
        Fraction in ``[0, 1]``: each wait is drawn from ``[(1 - jitter) * d, d]``.

    Examples
    --------
    >>> policy = RetryPolicy(retries=4, retry_delay=10, backoff=2, max_delay=30, jitter=0)
    >>> [policy.delay(attempt) for attempt in (1, 2, 3, 4)]
    [10.0, 20.0, 30.0, 30.0]
    >>> 7.5 <= RetryPolicy(1, 10, jitter=0.25).delay(1) <= 10
    True
    """

    retries: int = 0
    retry_delay: float = 0.0
    backoff: float = 1.0
    max_delay: float = 300.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {self.retries!r}")
        for name in ("retry_delay", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
        if isinstance(self.backoff, bool) or not isinstance(self.backoff, (int, float)) or not self.backoff > 0:
            raise ValueError(f"backoff must be a positive number, got {self.backoff!r}")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float)) or not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be a number in [0, 1], got {self.jitter!r}")

    def delay(self, attempt: int, uniform: Callable[[float, float], float] = random.uniform) -> float:
        """Seconds to wait after failed attempt number *attempt* (counted from 1)."""
        try:
            capped = min(float(self.retry_delay) * self.backoff ** (attempt - 1), float(self.max_delay))
        except OverflowError:
            capped = float(self.max_delay)
        return capped * (1 - uniform(0, self.jitter)) if self.jitter else capped
