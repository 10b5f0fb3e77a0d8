"""How long to wait before trying again, and the one retry loop of daskgif (tasks, the webhook)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from daskgif.core import runtime
from daskgif.errors import RunFailed, is_transient
from daskgif.redact import mask

__all__ = ["RetryPolicy", "retry", "error_line"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try again, and the delay before each retry: growing by *backoff*, capped at
    *max_delay* seconds, shortened by a random fraction of at most *jitter* (runs do not retry together).

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
        checks = {"retries": (lambda v: isinstance(v, int) and v >= 0, "a non-negative integer"),
                  "retry_delay": (lambda v: v >= 0, "a non-negative number of seconds"),
                  "backoff": (lambda v: v > 0, "a positive number"),
                  "max_delay": (lambda v: v >= 0, "a non-negative number of seconds"),
                  "jitter": (lambda v: 0 <= v <= 1, "a number in [0, 1]")}
        for f in fields(self):
            value, (ok, expected) = getattr(self, f.name), checks[f.name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise ValueError(f"{f.name} must be {expected}, got {value!r}")

    def delay(self, attempt: int, uniform: Callable[[float, float], float] = random.uniform) -> float:
        """Seconds to wait after failed attempt number *attempt* (counted from 1)."""
        try:
            capped = min(float(self.retry_delay) * self.backoff ** (attempt - 1), float(self.max_delay))
        except OverflowError:
            capped = float(self.max_delay)
        return capped * (1 - uniform(0, self.jitter)) if self.jitter else capped


def error_line(exc: BaseException) -> str:
    """One line naming *exc*, secrets masked; a ``RunFailed`` already names its task and cause.

    >>> error_line(ConnectionError("down"))
    'ConnectionError: down'
    """
    return mask(str(exc) if isinstance(exc, RunFailed) else f"{type(exc).__name__}: {exc}")


def retry(func: Callable[[], Any], policy: RetryPolicy, *, retry_if: Callable[[BaseException], bool] = is_transient,
          operation: str = "operation", on_retry: Callable[[BaseException], None] | None = None,
          sleep: Callable[[float], None] = time.sleep) -> Any:
    """Return ``func()``, trying again as *policy* says after the errors *retry_if* accepts (default: transient).

    Each retry is logged and given to *on_retry*; the wait holds no worker thread slot.

    >>> retry(lambda: 42, RetryPolicy(retries=2), operation="answer")
    42
    """
    for attempt in range(1, policy.retries + 1):
        try:
            return func()
        except Exception as e:
            if not retry_if(e):
                raise
            logger.warning("Retrying %s after %s (attempt %d/%d)", operation, error_line(e), attempt,
                           policy.retries + 1)
            if on_retry is not None:
                on_retry(e)
        delay = policy.delay(attempt)
        if delay > 0:
            with runtime.released():
                sleep(delay)
    return func()
