"""What a run's tasks may take: at most N downloads and M frame writes at once (``daskgif.limits``: on a worker
a :class:`distributed.Semaphore` across the cluster, else a :class:`threading.BoundedSemaphore`), and seconds
per attempt (``daskgif.task-timeout``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from daskgif.core.runtime import on_worker
from daskgif.pipeline import kinds

__all__ = ["KINDS", "hold", "check_limits", "TIMED_STEPS", "check_timeouts"]

#: What can be limited: the download of ``fetch``, and each frame file's write.
KINDS = ("fetch", "write")

#: The steps ``daskgif.task-timeout`` may name; ``map-frames`` only waits for its batches, which have their own.
TIMED_STEPS = ("fetch", "split", "write-frame", "combine")

LEASES, SECONDS = kinds.or_none(kinds.POSITIVE_INTEGER), kinds.or_none(kinds.POSITIVE_SECONDS)

_semaphores: dict[tuple, Any] = {}
_lock = threading.Lock()


@contextlib.contextmanager
def hold(kind: str, limits: Mapping[str, int | None] | None) -> Iterator[None]:
    """Hold one lease of the *kind* limit while the block runs; no limit set, no wait.

    >>> with hold("write", {"write": 2}):
    ...     pass
    """
    leases = (limits or {}).get(kind)
    if not leases:
        yield
        return
    if on_worker():
        from distributed import Semaphore, get_worker

        # Named with its leases: distributed refuses one name with two numbers (another run's other limit).
        name = f"daskgif-{kind}-{leases}"
        key, make = (kind, leases, get_worker().address), lambda: Semaphore(max_leases=leases, name=name)
    else:
        key, make = (kind, leases), lambda: threading.BoundedSemaphore(leases)
    with _lock:  # made once per kind and limit (on a worker: its handle on the cluster-wide one)
        semaphore = _semaphores[key] = _semaphores[key] if key in _semaphores else make()
    with semaphore:
        yield


def check_limits(value: Any) -> dict[str, int | None]:
    """Check ``daskgif.limits``: a mapping of :data:`KINDS` to positive integers or ``null``.

    >>> check_limits({"fetch": 2})
    {'fetch': 2, 'write': None}
    """
    value = {} if value is None else value
    if isinstance(value, Mapping) and set(value) <= set(KINDS) and all(map(LEASES.accepts, value.values())):
        return {kind: value.get(kind) for kind in KINDS}
    raise ValueError(f"daskgif.limits must map {', '.join(KINDS)} to a positive integer or null, got {value!r}")


def check_timeouts(value: Any) -> dict[str, float | None]:
    """Turn ``daskgif.task-timeout`` (one number, ``null``, or a mapping by step) into seconds per step.

    >>> check_timeouts(30)
    {'fetch': 30, 'split': 30, 'write-frame': 30, 'combine': 30}
    >>> check_timeouts({"write-frame": 5})
    {'fetch': None, 'split': None, 'write-frame': 5, 'combine': None}
    """
    if SECONDS.accepts(value):
        return {step: value for step in TIMED_STEPS}
    if isinstance(value, Mapping) and set(value) <= set(TIMED_STEPS) and all(map(SECONDS.accepts, value.values())):
        return {step: value.get(step) for step in TIMED_STEPS}
    raise ValueError("daskgif.task-timeout must be null, a positive number of seconds or a mapping of "
                     f"{', '.join(TIMED_STEPS)} to them, got {value!r}")
