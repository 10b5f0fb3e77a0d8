"""A run's messages on the ``daskgif`` events channel (:mod:`daskgif.core.events`), and the hook that sends them.

Every message is a small JSON-able dict with ``kind`` and ``run`` (the run's token, also in its task keys):

- ``{"kind": "run", "state": "Running", "time", "parameters", "out"}``: a run starts (parameters masked);
- ``{"kind": "step", "name", "state", "attempts", "start", "end", "message"}``: a step changes state;
- ``{"kind": "map", "name": "write-frame", "total"}``: the frame count is known;
- ``{"kind": "frames", "name", "counts", "busy", "start", "end", "records"}``: a batch's frames finished
  since its last such message (every :data:`FLUSH_INTERVAL` s and at its end), by state, with the state of
  each one that was not a plain success;
- ``{"kind": "run", "state": "Success" | "Failed", "time", "frames", "message"}``: a run ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from daskgif.core.events import emit
from daskgif.core.state import FAILED, FINAL, MappedStates, State

__all__ = ["FLUSH_INTERVAL", "StateHook"]

FLUSH_INTERVAL = 0.25


class StateHook:
    """An ``on_state`` hook that sends the task states of run *run* as messages (see the module docstring).

    A :class:`~daskgif.core.fanout.BatchHook`: the final states of mapped items are gathered and sent every
    :data:`FLUSH_INTERVAL` seconds and at each batch's end.  The first step's hook is given *announce*: the
    fields of the ``run`` message sent before its first state.
    """

    def __init__(self, run: str, announce: Mapping[str, Any] | None = None):
        self.run = run
        self.announce = dict(announce) if announce is not None else None
        self.lock = threading.Lock()
        self.frames: MappedStates | None = None  # gathered since the last message
        self.sent = time.monotonic()

    def __reduce__(self) -> Any:
        return (StateHook, (self.run, self.announce))

    def __repr__(self) -> str:
        return f"StateHook({self.run!r})"

    def __call__(self, state: State) -> None:
        if state.index is not None:
            if state.state in FINAL:  # a frame's passing states would be one message each: only final ones count
                self.gather(state.name, state)
            return
        if self.announce is not None:
            emit({"kind": "run", "run": self.run, "state": "Running", "time": state.start or time.time(),
                  **self.announce})
            self.announce = None
        emit({"kind": "step", "run": self.run, **state.to_dict()})
        if state.state == FAILED:
            emit({"kind": "run", "run": self.run, "state": FAILED, "time": time.time(), "message": state.message})

    def gather(self, name: str, state: State | None = None, reused: int = 0) -> None:
        """Add the final *state* of an item of task *name* and *reused* items; send every :data:`FLUSH_INTERVAL`."""
        with self.lock:
            if self.frames is None:
                self.frames = MappedStates(name)
            if state is not None:
                self.frames.add(state)
            self.frames.add_reused(reused)
            due = time.monotonic() - self.sent >= FLUSH_INTERVAL
        if due:
            self.flush()

    def end_batch(self, name: str, reused: int) -> None:
        """Count *reused* items of task *name* kept from an earlier run, and send what was gathered."""
        if reused:
            self.gather(name, reused=reused)
        self.flush()

    def flush(self) -> None:
        """Send the frame states gathered since the last message, if any."""
        with self.lock:
            frames, self.frames, self.sent = self.frames, None, time.monotonic()
        if frames is not None:
            emit({"kind": "frames", "run": self.run, "name": frames.name, "counts": frames.counts,
                  "busy": frames.busy, "start": frames.start, "end": frames.end,
                  "records": [s.to_dict() for s in frames.records.values()],
                  **({"reused": frames.reused} if frames.reused else {})})
