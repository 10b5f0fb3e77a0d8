"""Run one pipeline so that a stop request is honoured, on a cluster or a local scheduler.

A stop (the CLI sets it on SIGINT/SIGTERM) *cancels* the run: on a
``distributed.Client`` its futures are cancelled, so queued tasks never start;
everywhere, the run is marked cancelled (:func:`daskgif.pipeline.cancel.cancel`) and its
tasks check that mark before each frame they write and before the output is
renamed into place.  A Python thread cannot be interrupted, so a write already
under way finishes (writes are atomic: a whole file or none); nothing is written
after that.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

from daskgif.core import events
from daskgif.core.runtime import in_thread, wait_done
from daskgif.errors import Cancelled
from daskgif.pipeline import cancel
from daskgif.pipeline.graph import Pipeline

__all__ = ["Cancelled", "wait_for", "compute"]

logger = logging.getLogger(__name__)


def wait_for(stop: threading.Event, seconds: float) -> bool:
    """Sleep *seconds*, or less if *stop* is set; return whether it is set.

    Polls rather than ``stop.wait()``: a signal handler that sets *stop* while
    the main thread holds the event's lock inside ``wait()`` would deadlock.
    """
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
    return stop.is_set()


def compute(graph: Pipeline, *, client: Any = None, scheduler: str | None = None,
            stop: threading.Event | None = None, stop_timeout: float = 60, number: int = 1) -> Any:
    """Compute *graph* on *client* (or the local *scheduler*); cancel it when *stop* is set.

    Returns the run's :class:`~daskgif.pipeline.result.Result`; raises
    :class:`~daskgif.errors.RunFailed` for a failed run and
    :class:`~daskgif.errors.Cancelled` for a stopped one.
    """
    stop = stop or threading.Event()
    try:
        if client is not None:
            events.relay(client)
            return _on_client(graph, client, stop, stop_timeout, number)
        return _locally(graph, scheduler, stop, number)
    finally:
        cancel.forget(graph.run)
        if stop.is_set():  # its tasks have ended: the lease need not wait for daskgif.lock-timeout
            graph.params.lease.release()


def _locally(graph: Pipeline, scheduler: str | None, stop: threading.Event, number: int) -> Any:
    # A daemon thread, so a second signal (KeyboardInterrupt in the main thread) can end the process.
    future = in_thread(functools.partial(graph.compute, scheduler=scheduler), f"daskgif-run-{number}")
    while not wait_done(future, 0.05):
        if stop.is_set():
            cancel.cancel(graph.run)
            wait_done(future, None)
    if stop.is_set():
        raise Cancelled(f"run {number} cancelled by a stop request")
    return future.result()


def _on_client(graph: Pipeline, client: Any, stop: threading.Event, timeout: float, number: int) -> Any:
    future = client.compute(graph)
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    while not done.is_set():
        if wait_for(stop, 0.05):
            cancel_run(client, future, graph.run, timeout, number)
            raise Cancelled(f"run {number} cancelled by a stop request")
    return future.result()


def cancel_run(client: Any, future: Any, token: str, timeout: float, number: int) -> None:
    """Cancel every task of run *token* (launched ones included) and wait for those executing to end."""
    logger.info("Stop requested: cancelling run %d", number)

    def cancel_launched(dask_scheduler: Any, token: str, client_id: str) -> int:
        # The write-frame futures belong to the worker client inside map-frames: only force cancels them.
        keys = [key for key, ts in dask_scheduler.tasks.items() if token in str(key)]
        dask_scheduler.stimulus_cancel(keys, client_id, force=True, reason="daskgif stop", msg=None)
        return len(keys)

    def executing(dask_worker: Any, token: str) -> int:
        cancel.cancel(token)  # tasks still running on this worker stop before their next frame
        return sum(token in str(key) for key, ts in dask_worker.state.tasks.items()
                   if ts.state in ("executing", "long-running", "cancelled"))

    client.run(cancel.cancel, token)  # first of all: no new frame is started
    client.cancel([future], force=True)
    client.run_on_scheduler(cancel_launched, token=token, client_id=client.id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sum(client.run(executing, token=token).values()):
            logger.info("Run %d cancelled; none of its tasks is still executing", number)
            return
        time.sleep(0.05)
    logger.warning("Run %d cancelled, but some of its tasks still ran after %g s", number, timeout)
