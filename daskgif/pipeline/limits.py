"""What a run's tasks may take: at most N downloads and M frame writes at once, and seconds per attempt.

``daskgif.limits`` (``{fetch: 4, write: 64}``; ``null`` = no limit) is read on
the client when the graph is built.  Where a task runs on a ``distributed``
worker the limit is Dask's own :class:`distributed.Semaphore`, named
``daskgif-<kind>``, so it holds across every run on that cluster, from any
client.  On a local scheduler it is a :class:`threading.BoundedSemaphore` per
kind, shared by the runs of this process.

``daskgif.task-timeout`` gives each step's attempts a timeout (``Task(timeout=...)``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from daskgif.core.runtime import on_worker

__all__ = ["KINDS", "hold", "check_limits", "TIMED_STEPS", "check_timeouts"]

#: What can be limited: the download of ``fetch``, and each frame file's write.
KINDS = ("fetch", "write")

#: The steps ``daskgif.task-timeout`` may name; ``map-frames`` only waits for its batches, which have their own.
TIMED_STEPS = ("fetch", "split", "write-frame", "combine")

_local: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_cluster: dict[tuple[str, int, str], Any] = {}
_lock = threading.Lock()


@contextlib.contextmanager
def hold(kind: str, limits: Mapping[str, int | None] | None) -> Iterator[None]:
    """Hold one lease of the *kind* limit while the block runs; no limit set, no wait.

    >>> with hold("write", {"write": 2}):
    ...     pass
    >>> with hold("write", None):
    ...     pass
    """
    leases = (limits or {}).get(kind)
    if not leases:
        yield
        return
    semaphore = _cluster_semaphore(kind, leases) if on_worker() else _local_semaphore(kind, leases)
    semaphore.acquire()
    try:
        yield
    finally:
        semaphore.release()


def _local_semaphore(kind: str, leases: int) -> threading.BoundedSemaphore:
    with _lock:
        return _local.setdefault((kind, leases), threading.BoundedSemaphore(leases))


def _cluster_semaphore(kind: str, leases: int) -> Any:
    """This worker's handle on the cluster-wide semaphore ``daskgif-<kind>`` (made once per worker and limit)."""
    from distributed import Semaphore, get_worker

    worker = get_worker()
    key = (kind, leases, worker.address)
    with _lock:
        semaphore = _cluster.get(key)
        if semaphore is None:
            semaphore = _cluster[key] = Semaphore(max_leases=leases, name=f"daskgif-{kind}")
        return semaphore


def check_limits(value: Any) -> dict[str, int | None]:
    """Check ``daskgif.limits``: a mapping of :data:`KINDS` to positive integers or ``null``.

    >>> check_limits({"fetch": 2})
    {'fetch': 2, 'write': None}
    >>> check_limits({"fetch": 0})
    Traceback (most recent call last):
    ...
    ValueError: daskgif.limits must map fetch, write to a positive integer or null, got {'fetch': 0}
    """
    def ok(v: Any) -> bool:
        return v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)

    if value is None:
        value = {}
    if isinstance(value, Mapping) and set(value) <= set(KINDS) and all(map(ok, value.values())):
        return {kind: value.get(kind) for kind in KINDS}
    raise ValueError(f"daskgif.limits must map {', '.join(KINDS)} to a positive integer or null, got {value!r}")


def check_timeouts(value: Any) -> dict[str, float | None]:
    """Turn ``daskgif.task-timeout`` (one number, ``null``, or a mapping by step) into seconds per step.

    >>> check_timeouts(30)
    {'fetch': 30, 'split': 30, 'write-frame': 30, 'combine': 30}
    >>> check_timeouts({"write-frame": 5})
    {'fetch': None, 'split': None, 'write-frame': 5, 'combine': None}
    >>> check_timeouts({"write": 5})
    Traceback (most recent call last):
    ...
    ValueError: daskgif.task-timeout must be null, a positive number of seconds or a mapping of fetch, split, \
write-frame, combine to them, got {'write': 5}
    """
    def seconds(v: Any) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0)

    if seconds(value):
        return {step: value for step in TIMED_STEPS}
    if isinstance(value, Mapping) and set(value) <= set(TIMED_STEPS) and all(map(seconds, value.values())):
        return {step: value.get(step) for step in TIMED_STEPS}
    raise ValueError("daskgif.task-timeout must be null, a positive number of seconds or a mapping of "
                     f"{', '.join(TIMED_STEPS)} to them, got {value!r}")
