"""Task states as Dask's structured events: workers send them, clients and the scheduler listen.

Every message is a small JSON-able dict on the topic :data:`TOPIC` (``"daskgif"``),
with ``kind`` and ``run`` (the run's token, also in its task keys):

``{"kind": "run", "state": "Running", "time", "parameters", "out"}``
    A run starts (sent by its first task; parameters masked).
``{"kind": "step", "name", "state", "attempts", "start", "end", "message"}``
    A step (``fetch``, ``split``, ``map-frames``, ``combine``) changes state:
    ``Running``, ``Retrying``, then ``Success``, ``Skipped`` or ``Failed``.
``{"kind": "map", "name": "write-frame", "total"}``
    The frame count is known.
``{"kind": "frames", "name": "write-frame", "counts", "busy", "start", "end", "records"}``
    Frames finished since the last such message from the same batch: counts by
    state, and the full state (``records``, list of dicts) of each frame that
    was not a plain success.  Sent at most every :data:`FLUSH_INTERVAL` seconds
    per batch and at its end, so 10,000 frames cost a few dozen messages.
``{"kind": "run", "state": "Success" | "Failed", "time", "frames", "message"}``
    A run ends.

On a ``distributed`` worker a message goes out with :meth:`distributed.Worker.log_event`:
the scheduler keeps it (``Scheduler.get_events("daskgif")``, the runs page reads
it) and pushes it to subscribed clients (:func:`relay`).  Elsewhere (the local
schedulers) it goes straight to this process's :data:`bus`.  Nothing polls.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from daskgif.core.state import FAILED, FINAL, MappedStates, State

__all__ = ["TOPIC", "FLUSH_INTERVAL", "emit", "bus", "relay", "StateHook"]

logger = logging.getLogger(__name__)

TOPIC = "daskgif"
FLUSH_INTERVAL = 0.25


class Bus:
    """This process's listeners of daskgif messages, from local tasks or relayed from a cluster."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[dict], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Callable[[dict], None]) -> Callable[[], None]:
        """Call *listener* with every message; return the function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, msg: dict) -> None:
        """Hand *msg* to every listener; a listener that raises is logged, not propagated."""
        for listener in list(self._listeners):
            try:
                listener(msg)
            except Exception:
                logger.exception("daskgif event listener %r failed", listener)


bus = Bus()
_relayed: weakref.WeakSet = weakref.WeakSet()


def emit(msg: dict) -> None:
    """Send *msg*: to the scheduler from a ``distributed`` worker, else to this process's :data:`bus`."""
    from daskgif.core.task import _on_worker

    if _on_worker():
        from distributed import get_worker

        get_worker().log_event(TOPIC, msg)
    else:
        bus.publish(msg)


def relay(client: Any) -> None:
    """Forward the daskgif messages that reach *client* to this process's :data:`bus` (once per client)."""
    if client in _relayed:
        return
    client.subscribe_topic(TOPIC, lambda event: bus.publish(event[1]))
    _relayed.add(client)


class StateHook:
    """An ``on_state`` hook that sends a run's task states as messages (see the module docstring).

    Parameters
    ----------
    run : str
        The run's token.
    announce : dict, optional
        Given to the first step's hook: a ``run`` message with these fields
        (masked parameters, output) goes out before its first state.
    """

    #: A frame's passing states (``Running``, ``Retrying``) are not sent: :class:`~daskgif.core.task.Task` skips them.
    passing_items = False

    def __init__(self, run: str, announce: Mapping[str, Any] | None = None):
        self.run = run
        self.announce = dict(announce) if announce is not None else None
        self._init()

    def _init(self) -> None:
        self._lock = threading.Lock()
        self._frames: MappedStates | None = None
        self._sent = time.monotonic()

    def __getstate__(self) -> dict:
        return {"run": self.run, "announce": self.announce}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init()

    def __repr__(self) -> str:
        return f"StateHook({self.run!r})"

    def __call__(self, state: State) -> None:
        if state.index is not None:
            self._add_frame(state)
            return
        if self.announce is not None:
            emit({"kind": "run", "run": self.run, "state": "Running", "time": state.start or time.time(),
                  **self.announce})
            self.announce = None
        emit({"kind": "step", "run": self.run, **state.to_dict()})
        if state.state == FAILED:
            emit({"kind": "run", "run": self.run, "state": FAILED, "time": time.time(), "message": state.message})

    def _add_frame(self, state: State) -> None:
        if state.state not in FINAL:
            return  # a frame's passing states would be one message each: only final ones count
        with self._lock:
            if self._frames is None:
                self._frames = MappedStates(state.name)
            self._frames.add(state)
            due = time.monotonic() - self._sent >= FLUSH_INTERVAL
        if due:
            self.flush()

    def reused(self, name: str, n: int) -> None:
        """Count *n* frames of task *name* kept from an earlier run (see :meth:`MappedStates.add_reused`)."""
        with self._lock:
            if self._frames is None:
                self._frames = MappedStates(name)
            self._frames.add_reused(n)

    def flush(self) -> None:
        """Send the frame states gathered since the last message, if any."""
        with self._lock:
            frames, self._frames = self._frames, None
            self._sent = time.monotonic()
        if frames is None:
            return
        emit({"kind": "frames", "run": self.run, "name": frames.name, "counts": frames.counts, "busy": frames.busy,
              "start": frames.start, "end": frames.end, "records": [s.to_dict() for s in frames.records.values()],
              **({"reused": frames.reused} if frames.reused else {})})
