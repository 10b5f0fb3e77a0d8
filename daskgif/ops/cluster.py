"""Where a run goes (a local scheduler by name, a running cluster by address, or a new ``LocalCluster``),
and how it runs there so that a stop request (the CLI's SIGINT/SIGTERM) cancels it.

An address that refuses, hangs or is no Dask scheduler fails within ``daskgif.connect-timeout`` seconds.
A stopped run's tasks write no frame and no output after the stop (:mod:`daskgif.pipeline.cancel`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import dask

from daskgif.core import events
from daskgif.core.runtime import LOCAL_SCHEDULERS, in_thread
from daskgif.errors import Cancelled, DaskgifError
from daskgif.pipeline import cancel
from daskgif.pipeline.graph import Pipeline

__all__ = ["LOCAL_SCHEDULERS", "check_scheduler", "starts_cluster", "connect", "ConnectError", "performance_report",
           "wait_for", "compute", "cancel_runs"]

logger = logging.getLogger(__name__)

#: Computations a new cluster's scheduler remembers (distributed's default, 100, holds ~5 MB of graphs).
HISTORY = 10
#: Entries of a new cluster's low-level logs (distributed's default, 1,000): the messages each comm keeps, with
#: the tasks' specs and daskgif's events in them, held ~25 MB per process after 300 runs of the sample.
LOG_LENGTH = 100

ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://)?[\w.\-\[\]:]*:\d+/?$", re.IGNORECASE)


class ConnectError(DaskgifError, OSError):
    """A scheduler address that could not be reached in time."""

    def __init__(self, address: str, message: str):
        super().__init__(address, message)
        self.address, self.message = address, message

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

    The client is made in a thread given up on after *timeout*: a listener that accepts the connection but
    never answers Dask's handshake holds ``Client()`` past its own ``timeout``.
    """
    from distributed import Client

    made = in_thread(functools.partial(Client, address, timeout=timeout, set_as_default=False), "daskgif-connect",
                     timeout=timeout + 1)
    error = made.exception() if made.done() else None
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
    """Yield a ``distributed.Client`` of *scheduler*, or ``None`` for a local scheduler's name.

    Without *scheduler*: ``dask.config`` ``scheduler-address`` if set, else a new ``LocalCluster`` of *workers*
    processes (default: Dask's CPU count), whose scheduler preloads *preload* (e.g. ``daskgif.dashboard``).
    *timeout* bounds reaching an address (default ``daskgif.connect-timeout``).
    """
    check_scheduler(scheduler)
    if scheduler in LOCAL_SCHEDULERS:
        yield None
        return
    from distributed import Client, LocalCluster

    address = scheduler or dask.config.get("scheduler-address", None)
    if address:
        from daskgif.pipeline.settings import read_setting

        with open_client(address, read_setting("connect-timeout") if timeout is None else timeout) as client:
            yield client
        return
    from dask.system import CPU_COUNT

    kwargs: dict[str, Any] = {"scheduler_kwargs": {"preload": list(preload)}} if preload else {}
    # The scheduler keeps each computation's graph for its dashboard, every comm its last messages: a long
    # schedule would hold 100 graphs and 1,000 messages per comm (the nannies pass this on to the workers).
    cluster = None
    try:
        with dask.config.set({"distributed.diagnostics.computations.max-history": HISTORY,
                              "distributed.admin.low-level-log-length": LOG_LENGTH}), \
                LocalCluster(n_workers=workers or CPU_COUNT, threads_per_worker=threads_per_worker, processes=True,
                             dashboard_address=":0", silence_logs=silence_logs, **kwargs) as cluster, \
                Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        if cluster is not None:
            forget_scheduler(cluster.scheduler)


def forget_scheduler(scheduler: Any) -> None:
    """Let go of a closed *scheduler*: what three caches of Dask keep of it, then the heap it freed.

    ``distributed.dashboard.scheduler.template_variables`` is memoized by scheduler, and
    ``distributed.core._expects_comm`` by each server's handlers, both without bound: a schedule that
    renews its cluster every N runs would keep every old scheduler alive.  ``dask.utils.key_split`` keeps
    the 100,000 last task keys it split (about a dozen per run, ~300 bytes each): ~4 MB more per 1,000
    runs, up to 30 MB.  Last, glibc is asked to return the freed pages (2 MB less after 1,000 runs).
    """
    from dask.utils import key_split
    from distributed import core

    getattr(getattr(core, "_expects_comm", None), "cache_clear", lambda: None)()
    key_split.cache_clear()
    try:
        from distributed.dashboard.scheduler import template_variables
    except ImportError:  # no bokeh: no dashboard, no cache
        template_variables = None
    for cell in getattr(template_variables, "__closure__", None) or ():
        if isinstance(cache := cell.cell_contents, dict):
            for key in [k for k in cache if k is scheduler or isinstance(k, tuple) and scheduler in k]:
                del cache[key]
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to ask
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def performance_report(client: Any, filename: str, code: str) -> Iterator[None]:
    """Dask's performance report of what runs inside (``daskgif run --report``), scripts inlined, *code* as caller."""
    from distributed import performance_report as report

    collect = report(filename=filename, mode="inline")
    with client.as_current():
        client.sync(collect.__aenter__)
        try:
            yield
        finally:
            client.sync(collect.__aexit__, None, None, None, code=code)


def wait_for(stop: threading.Event, seconds: float) -> bool:
    """Sleep *seconds*, or less if *stop* is set; return whether it is set.

    Polls rather than ``stop.wait()``: a signal handler that sets *stop* while the main thread holds the
    event's lock inside ``wait()`` would deadlock.
    """
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
    return stop.is_set()


def compute(graph: Pipeline, *, client: Any = None, scheduler: str | None = None,
            stop: threading.Event | None = None, stop_timeout: float = 60, number: int = 1) -> Any:
    """Compute *graph* on *client* (or the local *scheduler*); cancel it when *stop* is set.

    Returns the run's :class:`~daskgif.pipeline.result.Result`; raises :class:`~daskgif.errors.RunFailed`
    for a failed run and :class:`~daskgif.errors.Cancelled` for a stopped one.
    """
    stop = stop or threading.Event()
    try:
        if client is not None:
            events.relay(client)
            future = client.compute(graph)
        else:  # in a daemon thread, so a second signal (KeyboardInterrupt in this thread) can end the process
            future = in_thread(functools.partial(graph.compute, scheduler=scheduler), f"daskgif-run-{number}",
                               timeout=0)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        while not done.wait(0.05):  # not stop.wait(): the signal handler that sets *stop* would need its lock
            if stop.is_set():
                if client is not None:
                    cancel_runs(client, {number: (future, graph.run)}, stop_timeout)
                else:
                    cancel.cancel(graph.run)
                    done.wait()
                raise Cancelled(f"run {number} cancelled by a stop request")
        return future.result()
    finally:
        cancel.forget(graph.run)
        if stop.is_set():  # its tasks have ended: the lease need not wait for daskgif.lock-timeout
            graph.params.lease.release()


def cancel_runs(client: Any, runs: Mapping[int, tuple[Any, str]], timeout: float) -> None:
    """Cancel every task of each run (*runs*: by number, its future and token), all of them before waiting for
    any: a run cancelled only after another's tasks ended could finish meanwhile and write its output."""
    logger.info("Stop requested: cancelling run(s) %s", ", ".join(map(str, runs)))
    tokens = [token for _, token in runs.values()]

    def cancel_launched(dask_scheduler: Any, tokens: list[str], client_id: str) -> None:
        # The write-frame futures belong to the worker client inside map-frames: only force cancels them.
        keys = [key for key in dask_scheduler.tasks if any(token in str(key) for token in tokens)]
        dask_scheduler.stimulus_cancel(keys, client_id, force=True, reason="daskgif stop", msg=None)

    def executing(dask_worker: Any, tokens: list[str]) -> int:
        for token in tokens:
            cancel.cancel(token)  # tasks still running on this worker stop before their next frame
        return sum(any(token in str(key) for token in tokens) for key, ts in dask_worker.state.tasks.items()
                   if ts.state in ("executing", "long-running", "cancelled"))

    client.run(executing, tokens=tokens)  # first of all: no new frame or chunk is started, in any of them
    client.cancel([future for future, _ in runs.values()], force=True)
    client.run_on_scheduler(cancel_launched, tokens=tokens, client_id=client.id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sum(client.run(executing, tokens=tokens).values()):
            logger.info("Run(s) %s cancelled; none of their tasks is still executing", ", ".join(map(str, runs)))
            return
        time.sleep(0.05)
    logger.warning("Run(s) %s cancelled, but some of their tasks still ran after %g s", ", ".join(map(str, runs)),
                   timeout)
