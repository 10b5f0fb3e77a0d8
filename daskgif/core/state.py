"""What happened to a task: its :class:`State`, and the compact record of a mapped task's many states.

Standard library only: states travel from workers to the client, into results,
history lines, webhook bodies and the runs page.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SUCCESS", "SKIPPED", "FAILED", "RUNNING", "RETRYING", "FINAL", "State", "MappedStates",
           "iter_states", "first_failure", "describe"]

SUCCESS, SKIPPED, FAILED = "Success", "Skipped", "Failed"
#: Passing states, seen only while a task runs (state hooks, the runs page).
RUNNING, RETRYING = "Running", "Retrying"
FINAL = (SUCCESS, SKIPPED, FAILED)


@dataclass(frozen=True)
class State:
    """What happened to one run of a task (or to one item of a mapped task).

    >>> s = State("fetch", SKIPPED, attempts=1, start=10.0, end=10.5, message="data file exists")
    >>> s.ok, s.duration
    (True, 0.5)
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

    @property
    def plain(self) -> bool:
        """Whether this is an unremarkable success: first attempt, no message."""
        return self.state == SUCCESS and self.attempts <= 1 and not self.message

    def to_dict(self) -> dict:
        """Return the fields and the duration as a JSON-able dict."""
        return {**asdict(self), "duration": self.duration}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> State:
        """Inverse of :meth:`to_dict` (extra keys are ignored).

        >>> State.from_dict(State("split", SUCCESS, 1).to_dict()) == State("split", SUCCESS, 1)
        True
        """
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class MappedStates(Mapping[int, State]):
    """The states of a mapped task, kept small at any item count.

    Counts every item by state, and keeps a :class:`State` only for items that
    were not plain successes (failed, skipped, retried, with a message), or for
    every item when *keep_all*.  As a mapping it gives those kept states by map
    index.

    >>> m = MappedStates("write-frame")
    >>> m.add(State("write-frame", SUCCESS, 1, 0.0, 0.1, index=0))
    >>> m.add(State("write-frame", FAILED, 3, 0.0, 0.3, "OSError: disk full", index=1))
    >>> m.counts, list(m), m.total
    ({'Success': 1, 'Failed': 1}, [1], 2)
    """

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    records: dict[int, State] = field(default_factory=dict)
    keep_all: bool = False
    start: float | None = None
    end: float | None = None
    busy: float = 0.0
    reused: int = 0  # items not run because a rerun kept them; counted as Success too

    def add_reused(self, n: int) -> None:
        """Count *n* items kept from an earlier run: successes, not run again, not recorded one by one.

        >>> m = MappedStates("write-frame")
        >>> m.add_reused(3)
        >>> m.counts, m.reused, len(m)
        ({'Success': 3}, 3, 0)
        """
        if n:
            self.counts[SUCCESS] = self.counts.get(SUCCESS, 0) + n
            self.reused += n

    def add(self, state: State) -> None:
        """Count *state* and keep it if it is worth keeping."""
        # Called once per frame: written for speed (this is a hot path at 10,000 frames and more).
        counts, kind, start, end = self.counts, state.state, state.start, state.end
        counts[kind] = counts.get(kind, 0) + 1
        if self.keep_all or kind != SUCCESS or state.attempts > 1 or state.message:
            self.records[state.index] = state  # type: ignore[index]
        if start is not None:
            if self.start is None or start < self.start:
                self.start = start
            if end is not None:
                self.busy += end - start
        if end is not None and (self.end is None or end > self.end):
            self.end = end

    def update(self, other: MappedStates) -> None:
        """Add every count and record of *other*."""
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.records.update(other.records)
        for bound, pick in (("start", min), ("end", max)):
            mine, theirs = getattr(self, bound), getattr(other, bound)
            setattr(self, bound, theirs if mine is None else mine if theirs is None else pick(mine, theirs))
        self.busy += other.busy
        self.reused += other.reused

    @property
    def total(self) -> int:
        """How many items were counted."""
        return sum(self.counts.values())

    def __getitem__(self, index: int) -> State:
        return self.records[index]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.records))

    def __len__(self) -> int:
        return len(self.records)

    #: :meth:`to_dict` gives at most this many records (the first by map index) and says how many it left out.
    RECORDS_LIMIT = 100

    def to_dict(self) -> dict:
        """Counts, busy seconds and the kept records (at most :data:`RECORDS_LIMIT`), JSON-able."""
        indices = sorted(self.records)
        found = {"counts": dict(self.counts), "total": self.total, "busy": round(self.busy, 6),
                 "records": {str(i): self.records[i].to_dict() for i in indices[:self.RECORDS_LIMIT]}}
        if len(indices) > self.RECORDS_LIMIT:
            found["records_left_out"] = len(indices) - self.RECORDS_LIMIT
        return {**found, "reused": self.reused} if self.reused else found


def iter_states(states: Mapping[str, Any]) -> Iterator[State]:
    """Yield every kept state of a run in pipeline order, mapped states by map index.

    >>> states = {"fetch": State("fetch", "Skipped"),
    ...           "write-frame": {1: State("write-frame", "Success", index=1),
    ...                           0: State("write-frame", "Success", index=0)}}
    >>> [(s.name, s.index) for s in iter_states(states)]
    [('fetch', None), ('write-frame', 0), ('write-frame', 1)]
    """
    for found in states.values():
        if isinstance(found, Mapping):
            yield from (found[i] for i in sorted(found))
        else:
            yield found


def first_failure(states: Iterable[State]) -> State | None:
    """Return the root failure: the first failed state that ran, else the first failed one.

    >>> first_failure([State("fetch", FAILED, 3, message="OSError: x"), State("split", FAILED)]).name
    'fetch'
    >>> first_failure([State("fetch", SUCCESS)]) is None
    True
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
