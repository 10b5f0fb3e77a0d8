"""What happened: a task's :class:`State`, a mapped task's :class:`MappedStates`, a run's :class:`RunReport`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SUCCESS", "SKIPPED", "FAILED", "RUNNING", "RETRYING", "FINAL", "State", "MappedStates", "RunReport",
           "iter_states", "first_failure", "describe"]

SUCCESS, SKIPPED, FAILED = "Success", "Skipped", "Failed"
#: Passing states, seen only while a task runs (state hooks, the runs page).
RUNNING, RETRYING = "Running", "Retrying"
FINAL = (SUCCESS, SKIPPED, FAILED)


@dataclass(frozen=True)
class State:
    """What happened to one run of a task (or to one item of a mapped task).

    >>> s = State("fetch", SKIPPED, attempts=1, start=10.0, end=10.5, message="data file exists")
    >>> s.ok, s.duration, State.from_dict(s.to_dict()) == s
    (True, 0.5, True)
    """

    name: str
    state: str
    attempts: int = 0
    start: float | None = None
    end: float | None = None
    message: str = ""
    index: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the task did not fail (a skipped task is ok)."""
        return self.state != FAILED

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while unknown."""
        return None if self.start is None or self.end is None else self.end - self.start

    def to_dict(self) -> dict:
        """The fields and the duration, JSON-able."""
        return {**asdict(self), "duration": self.duration}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> State:
        """Inverse of :meth:`to_dict` (extra keys are ignored)."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class MappedStates(Mapping[int, State]):
    """The states of a mapped task, small at any item count: counts by state, and (as a mapping by
    map index) the :class:`State` of each item that was not a plain success.

    >>> m = MappedStates("write-frame")
    >>> m.add(State("write-frame", SUCCESS, 1, 0.0, 0.1, index=0))
    >>> m.add(State("write-frame", FAILED, 3, 0.0, 0.3, "OSError: disk full", index=1))
    >>> m.add_reused(2)  # items kept from an earlier run: successes, not run again
    >>> m.counts, list(m), m.reused
    ({'Success': 3, 'Failed': 1}, [1], 2)
    """

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    records: dict[int, State] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    busy: float = 0.0
    reused: int = 0

    #: :meth:`to_dict` gives at most this many records (the first by map index) and says how many it left out.
    RECORDS_LIMIT = 100

    def add_reused(self, n: int) -> None:
        """Count *n* items kept from an earlier run as successes."""
        if n:
            self.counts[SUCCESS] = self.counts.get(SUCCESS, 0) + n
            self.reused += n

    def add(self, state: State) -> None:
        """Count *state*, and keep it unless it is a plain success (a hot path: once per item)."""
        kind, start, end = state.state, state.start, state.end
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind != SUCCESS or state.attempts > 1 or state.message:
            self.records[state.index] = state  # type: ignore[index]
        if start is not None:
            self.start = start if self.start is None or start < self.start else self.start
            self.busy += 0.0 if end is None else end - start
        if end is not None and (self.end is None or end > self.end):
            self.end = end

    def update(self, other: MappedStates) -> None:
        """Add every count and record of *other*."""
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.records.update(other.records)
        self.start = min((t for t in (self.start, other.start) if t is not None), default=None)
        self.end = max((t for t in (self.end, other.end) if t is not None), default=None)
        self.busy, self.reused = self.busy + other.busy, self.reused + other.reused

    def __getitem__(self, index: int) -> State:
        return self.records[index]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.records))

    def __len__(self) -> int:
        return len(self.records)

    def to_dict(self) -> dict:
        """Counts, busy seconds and the kept records (at most :data:`RECORDS_LIMIT`), JSON-able."""
        indices = sorted(self.records)
        found = {"counts": dict(self.counts), "total": sum(self.counts.values()), "busy": round(self.busy, 6),
                 "records": {str(i): self.records[i].to_dict() for i in indices[:self.RECORDS_LIMIT]}}
        if len(indices) > self.RECORDS_LIMIT:
            found["records_left_out"] = len(indices) - self.RECORDS_LIMIT
        return {**found, "reused": self.reused} if self.reused else found


@dataclass(frozen=True)
class RunReport:
    """What a run did: whether it succeeded, every task's state, its start and end (``RunFailed.result``).

    >>> run = RunReport.failed({"fetch": State("fetch", FAILED, 3, 10.0, 12.0, "OSError: x")}, now=13.0)
    >>> run.ok, run.duration, run.counts(), run.to_dict()["states"]["fetch"]["attempts"]
    (False, 3.0, {'fetch': {'Failed': 1}}, 3)
    """

    ok: bool
    states: dict[str, Any]
    started: float = 0.0
    finished: float = 0.0

    @classmethod
    def failed(cls, states: Mapping[str, Any], now: float | None = None) -> RunReport:
        """The record of a run that failed with these *states*, from the first task's start to *now*."""
        now = time.time() if now is None else now
        started = min((s.start for s in states.values() if s.start is not None), default=now)
        return cls(ok=False, states=dict(states), started=started, finished=now)

    @property
    def duration(self) -> float:
        """Seconds from the first task's start to the run's end."""
        return self.finished - self.started

    def counts(self) -> dict[str, dict[str, int]]:
        """Return ``{task name: {state: how many}}``, e.g. ``{"write-frame": {"Success": 27}}``."""
        return {name: dict(found.counts) if isinstance(found, MappedStates) else {found.state: 1}
                for name, found in self.states.items()}

    def to_dict(self) -> dict[str, Any]:
        """The record, JSON-able."""
        return {"ok": self.ok, "states": {name: found.to_dict() for name, found in self.states.items()},
                "started": self.started, "finished": self.finished, "duration": self.duration}


def iter_states(states: Mapping[str, Any]) -> Iterator[State]:
    """Every kept state of a run in task order, a mapped task's by map index."""
    for found in states.values():
        yield from (found[i] for i in sorted(found)) if isinstance(found, Mapping) else (found,)


def first_failure(states: Iterable[State]) -> State | None:
    """The root failure: the first failed state that ran, else the first failed one.

    >>> first_failure([State("fetch", FAILED, 3, message="OSError: x"), State("split", FAILED)]).name
    'fetch'
    """
    failed = [s for s in states if s.state == FAILED]
    return next((s for s in failed if s.attempts), failed[0] if failed else None)


def describe(state: State) -> str:
    """Name a failed task, its frame, its attempts and its cause in one line.

    >>> describe(State("write-frame", "Failed", attempts=3, index=4, message="OSError: disk full"))
    "task 'write-frame' (frame 4) failed after 3 attempts: OSError: disk full"
    """
    frame = "" if state.index is None else f" (frame {state.index})"
    attempts = f"{state.attempts} attempt{'s' * (state.attempts != 1)}"
    return f"task {state.name!r}{frame} failed after {attempts}: {state.message}"
