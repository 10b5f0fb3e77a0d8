"""Run one graph so that a stop request is noticed: cancelled on a cluster, finished locally.

On a ``distributed.Client`` the run is *cancelled*: its queued tasks are
dropped and the tasks already executing are waited for, because a Python thread
cannot be interrupted and every write is atomic, so waiting is what leaves no
temporary file behind.  On the local schedulers a running graph cannot be
cancelled, so the run is *finished*.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from daskgif.errors import DaskgifError

__all__ = ["Cancelled", "active_client", "wait_for", "compute_on_client", "compute_locally"]

logger = logging.getLogger(__name__)


def active_client() -> Any:
    """The current ``distributed.Client``, or ``None``: a run on it can be cancelled, not only finished."""
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def wait_for(stop: threading.Event, seconds: float) -> bool:
    """Sleep *seconds*, or less if *stop* is set; return whether it is set.

    Polls rather than ``stop.wait()``: a signal handler that sets *stop* while
    the main thread holds the event's lock inside ``wait()`` would deadlock.
    """
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))
    return stop.is_set()


class Cancelled(DaskgifError):
    """A run stopped before it finished."""


def compute_on_client(graph: Any, client: Any, stop: threading.Event, stop_timeout: float, number: int) -> Any:
    """Run *graph* on *client*; when *stop* is set, cancel it and wait for its executing tasks."""
    future = client.compute(graph)
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    while not done.wait(0.1):
        if stop.is_set():
            token = str(graph.key).split("-", 1)[1]
            cancel_run(client, future, token, stop_timeout, number)
            raise Cancelled(f"run {number} cancelled by a stop request")
    return future.result()


def cancel_run(client: Any, future: Any, token: str, timeout: float, number: int) -> None:
    """Cancel every task of the run *token* (mapped ones included) and wait for those executing to end."""
    logger.warning("Stop requested: cancelling run %d (tasks already executing finish their atomic writes)", number)

    def cancel_mapped(dask_scheduler: Any, token: str, client_id: str) -> int:
        # The write-frame futures belong to the client inside map-frames: only force cancels them.
        keys = [key for key, ts in dask_scheduler.tasks.items() if token in str(key) and ts.who_wants]
        dask_scheduler.stimulus_cancel(keys, client_id, force=True, reason="daskgif stop", msg=None)
        return len(keys)

    def executing(dask_worker: Any, token: str) -> int:
        return sum(token in str(key) for key, ts in dask_worker.state.tasks.items()
                   if ts.state in ("executing", "long-running", "cancelled"))

    client.cancel([future], force=True)
    client.run_on_scheduler(cancel_mapped, token=token, client_id=client.id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sum(client.run(executing, token=token).values()):
            logger.warning("Run %d cancelled; none of its tasks is still executing", number)
            return
        time.sleep(0.1)
    logger.error("Run %d cancelled, but some of its tasks still ran after %g s; temporary files of their "
                 "writes may remain", number, timeout)


def compute_locally(graph: Any, scheduler: str | None, stop: threading.Event, number: int) -> Any:
    """Run *graph* on a local scheduler in a helper thread, so a stop request is noticed and said at once."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = graph.compute(scheduler=scheduler)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = e

    # A daemon thread: a second signal (KeyboardInterrupt) must be able to end the process.
    thread = threading.Thread(target=target, name=f"daskgif-run-{number}", daemon=True)
    thread.start()
    said = False
    while thread.is_alive():
        thread.join(0.1)
        if stop.is_set() and not said:
            logger.warning("Stop requested: finishing run %d (the %r scheduler cannot cancel a running graph)",
                           number, scheduler or "default")
            said = True
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
