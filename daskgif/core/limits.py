"""Limits shared by every run: at most N downloads, at most M frame writes at once.

``daskgif.limits`` (``{fetch: 4, write: 64}``; ``null`` = no limit) is read on
the client when the graph is built.  Where a task runs on a ``distributed``
worker the limit is Dask's own :class:`distributed.Semaphore`, named
``daskgif-<kind>``, so it holds across every run on that cluster, from any
client.  On a local scheduler it is a :class:`threading.BoundedSemaphore` per
kind, shared by the runs of this process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["KINDS", "hold", "check_limits"]

#: What can be limited: the download of ``fetch``, and each frame file's write.
KINDS = ("fetch", "write")

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
    from daskgif.core.task import _on_worker

    semaphore = _cluster_semaphore(kind, leases) if _on_worker() else _local_semaphore(kind, leases)
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
