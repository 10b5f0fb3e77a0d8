"""A run's messages on the ``daskgif`` events channel (:mod:`daskgif.core.events`), and the hook that sends them.

Every message is a small JSON-able dict with ``kind`` and ``run`` (the run's
token, also in its task keys):

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
    """An ``on_state`` hook that sends a run's task states as messages (see the module docstring).

    A :class:`~daskgif.core.fanout.BatchHook`: the final states of mapped items are
    gathered and sent every :data:`FLUSH_INTERVAL` seconds and at each batch's end.

    Parameters
    ----------
    run : str
        The run's token.
    announce : dict, optional
        Given to the first step's hook: a ``run`` message with these fields
        (masked parameters, output) goes out before its first state.
    """

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

    def end_batch(self, name: str, reused: int) -> None:
        """Count *reused* items of task *name* kept from an earlier run, and send what was gathered."""
        if reused:
            with self._lock:
                if self._frames is None:
                    self._frames = MappedStates(name)
                self._frames.add_reused(reused)
        self.flush()

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
