"""Where a run goes: a local scheduler by name, a running cluster by address, or a new ``LocalCluster``.

Addresses follow Dask's conventions: ``--scheduler ADDRESS``, else
``dask.config`` ``scheduler-address`` (``DASK_SCHEDULER_ADDRESS``).  Connecting
is bounded by ``daskgif.connect-timeout`` seconds: an address that refuses,
hangs or is not a Dask scheduler fails with one line naming it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterator
from typing import Any

import dask

from daskgif.core.runtime import LOCAL_SCHEDULERS, in_thread, wait_done
from daskgif.errors import DaskgifError

__all__ = ["LOCAL_SCHEDULERS", "check_scheduler", "starts_cluster", "connect", "ConnectError"]

logger = logging.getLogger(__name__)

#: Computations a new cluster's scheduler remembers (distributed's default, 100, holds ~5 MB of graphs).
HISTORY = 10

ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://)?[\w.\-\[\]:]*:\d+/?$", re.IGNORECASE)


class ConnectError(DaskgifError, OSError):
    """A scheduler address that could not be reached in time."""

    def __init__(self, address: str, message: str):
        super().__init__(address, message)
        self.address = address
        self.message = message

    def __str__(self) -> str:
        return f"cannot connect to the Dask scheduler at {self.address}: {self.message}"


def check_scheduler(scheduler: str | None) -> str | None:
    """Return *scheduler* if it is a local scheduler's name or a scheduler address, else raise ``ValueError``.

    >>> check_scheduler("sync"), check_scheduler("tcp://10.0.0.5:8786"), check_scheduler("localhost:8786")
    ('sync', 'tcp://10.0.0.5:8786', 'localhost:8786')
    >>> check_scheduler("thread")
    Traceback (most recent call last):
    ...
    ValueError: scheduler must be sync, threads, processes or a scheduler address such as tcp://host:8786, got 'thread'
    """
    if scheduler is None or scheduler in LOCAL_SCHEDULERS or ADDRESS.match(scheduler):
        return scheduler
    raise ValueError(f"scheduler must be sync, threads, processes or a scheduler address such as "
                     f"tcp://host:8786, got {scheduler!r}")


def starts_cluster(scheduler: str | None) -> bool:
    """Whether :func:`connect` starts a new ``LocalCluster`` for *scheduler*: no name, no address, none configured.

    >>> starts_cluster("threads"), starts_cluster("tcp://10.0.0.5:8786")
    (False, False)
    >>> with dask.config.set({"scheduler-address": None}):
    ...     starts_cluster(None)
    True
    """
    return scheduler is None and not dask.config.get("scheduler-address", None)


@contextlib.contextmanager
def open_client(address: str, timeout: float) -> Iterator[Any]:
    """A ``distributed.Client`` of the scheduler at *address*, or :class:`ConnectError` within *timeout* seconds.

    The client is made in a helper thread that is given up on after *timeout*:
    a listener that accepts the connection but never answers Dask's handshake
    holds ``Client()`` past its own ``timeout``.
    """
    from distributed import Client

    made = in_thread(functools.partial(Client, address, timeout=timeout, set_as_default=False), "daskgif-connect")
    error = made.exception() if wait_done(made, timeout + 1) else None
    if not made.done() or error is not None:
        cause = "no answer" if error is None else f"{type(error).__name__}: {str(error).splitlines()[0]}" \
            if str(error) else type(error).__name__
        raise ConnectError(address, f"{cause} (daskgif.connect-timeout is {timeout:g} s)")
    with made.result() as client:
        yield client


@contextlib.contextmanager
def connect(scheduler: str | None = None, *, workers: int | None = None, threads_per_worker: int = 1,
            timeout: float | None = None, silence_logs: int = logging.CRITICAL,
            preload: tuple[str, ...] = ()) -> Iterator[Any]:
    """Yield a ``distributed.Client``, or ``None`` for a local scheduler.

    Parameters
    ----------
    scheduler : str, optional
        ``sync``, ``threads`` or ``processes`` (yields ``None``), or a scheduler
        address.  Default: ``dask.config`` ``scheduler-address`` if set, else a
        new ``LocalCluster`` of worker processes.
    workers, threads_per_worker : int
        Size of a new ``LocalCluster``; *workers* defaults to Dask's CPU count.
    timeout : float, optional
        Seconds to reach an address; default ``daskgif.connect-timeout``.
    silence_logs : int
        Level below which a new cluster's own log lines are dropped.
    preload : tuple of str
        Modules the new cluster's scheduler preloads (e.g. ``daskgif.dashboard``).
    """
    check_scheduler(scheduler)
    if scheduler in LOCAL_SCHEDULERS:
        yield None
        return
    from distributed import Client, LocalCluster

    address = scheduler or dask.config.get("scheduler-address", None)
    if address:
        from daskgif.pipeline.settings import read_setting

        timeout = read_setting("connect-timeout") if timeout is None else timeout
        with open_client(address, timeout) as client:
            yield client
        return
    from dask.system import CPU_COUNT

    kwargs: dict[str, Any] = {"scheduler_kwargs": {"preload": list(preload)}} if preload else {}
    # The scheduler keeps each computation's graph for its dashboard: a long schedule would hold 100 of them.
    with dask.config.set({"distributed.diagnostics.computations.max-history": HISTORY}), LocalCluster(n_workers=workers or CPU_COUNT, threads_per_worker=threads_per_worker, processes=True,
                      dashboard_address=":0", silence_logs=silence_logs, **kwargs) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client
