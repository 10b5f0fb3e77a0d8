"""The runs page's model: what a scheduler has seen of each run, bounded.

:class:`Runs` keeps a :class:`RunRecord` per run, newest last, at most
``max_runs`` of them; a record counts its frames by state and keeps at most
``max_records`` notable frames (plain successes are counted, never kept one by
one).  The scheduler plugin of :mod:`daskgif.views.dashboard` feeds it the
``"daskgif"`` messages of :mod:`daskgif.core.events`; its HTTP handlers serve
:meth:`Runs.to_dict` and :meth:`RunRecord.detail_json`.  What it shows is masked
(:func:`daskgif.redact.scrub`).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from typing import Any

from daskgif.core.state import FAILED, RUNNING, SUCCESS
from daskgif.pipeline.steps import STEPS
from daskgif.redact import scrub

__all__ = ["Runs", "RunRecord"]

#: The steps of a daskgif pipeline, in order: shown before they start.
PIPELINE = tuple(step.name for step in STEPS)
MESSAGE_CHARS = 1000
#: The most frame records one detail answer carries (the model may keep more; the page says so).
RECORDS_SHOWN = 1000
#: The most ranges one frame grid has (frames past them are left out of the grid, not of the counts).
GRID_LIMIT = 2000


def _text(value: Any) -> str:
    """A message as short, masked text."""
    text = scrub(str(value or ""))
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


class RunRecord:
    """What the scheduler has seen of one run: its steps, its frame counts and its notable frames.

    Frame records are kept as tuples ``(state, attempts, start, end, message)``
    by map index, at most *max_records* of them; repeated messages are stored
    once.

    >>> run = RunRecord("abc", max_records=1)
    >>> run.add({"kind": "map", "name": "write-frame", "total": 3})
    >>> run.add({"kind": "frames", "counts": {"Success": 1, "Failed": 2}, "records": [
    ...     {"index": 1, "state": "Failed", "attempts": 3, "message": "OSError: disk full"},
    ...     {"index": 2, "state": "Failed", "attempts": 3, "message": "OSError: disk full"}]})
    >>> run.counts, sorted(run.records), run.dropped
    ({'Success': 1, 'Failed': 2}, [1], {'Failed': 1})
    """

    def __init__(self, run: str, max_records: int = 10000):
        self.run = run
        self.max_records = max_records
        self.state = RUNNING
        self.start: float | None = None
        self.end: float | None = None
        self.seen = time.time()
        self.parameters: dict = {}
        self.out: str | None = None
        self.message = ""
        self.size: int | None = None
        self.steps: dict[str, dict] = {}
        self.total: int | None = None
        self.counts: dict[str, int] = {}
        self.busy = 0.0
        self.records: dict[int, tuple] = {}
        self.dropped: dict[str, int] = {}
        self._texts: dict[str, str] = {}
        self.version = 0
        self._cache: tuple[int, str] | None = None

    @property
    def finished(self) -> bool:
        return self.state in (SUCCESS, FAILED)

    def add(self, msg: Mapping[str, Any]) -> None:
        """Take one message of :mod:`daskgif.core.events` into account."""
        self.version += 1
        kind = msg.get("kind")
        stamp = msg.get("time")
        if kind == "run":
            if msg.get("state") == RUNNING:
                self.start = stamp if self.start is None else self.start
                self.parameters = dict(msg.get("parameters") or {})
                self.out = msg.get("out", self.out)
            else:
                self.state, self.end = msg.get("state", self.state), stamp
                self.message = _text(msg.get("message")) or self.message
                self.size = msg.get("size", self.size)
                if self.start is None:
                    self.start = min((s["start"] for s in self.steps.values() if s.get("start")), default=stamp)
        elif kind == "step":
            name = str(msg.get("name"))
            self.steps[name] = {key: msg.get(key) for key in ("state", "attempts", "start", "end")}
            self.steps[name]["message"] = self._intern(msg.get("message"))
            if self.start is None:
                self.start = msg.get("start")
        elif kind == "map":
            self.total = msg.get("total")
        elif kind == "frames":
            for state, n in (msg.get("counts") or {}).items():
                self.counts[state] = self.counts.get(state, 0) + n
            self.busy += msg.get("busy") or 0.0
            for record in msg.get("records") or ():
                self._keep(record)

    def _keep(self, record: Mapping[str, Any]) -> None:
        index, state = record.get("index"), record.get("state")
        if not isinstance(index, int):
            return
        if index not in self.records and len(self.records) >= self.max_records:
            self.dropped[state] = self.dropped.get(state, 0) + 1
            return
        self.records[index] = (state, record.get("attempts") or 0, record.get("start"), record.get("end"),
                               self._intern(record.get("message")))

    def _intern(self, message: Any) -> str:
        text = _text(message)
        return self._texts.setdefault(text, text) if len(self._texts) < 4 * self.max_records else text

    def summary(self) -> dict:
        """The run in one JSON-able line, for the runs table (``duration`` once it has ended)."""
        done = sum(self.counts.values())
        return scrub({
            "run": self.run, "state": self.state, "start": self.start, "end": self.end,
            "duration": None if self.start is None or self.end is None else self.end - self.start,
            "parameters": self.parameters, "out": self.out, "message": self.message, "size": self.size,
            "frames": {"total": self.total, "done": done, "counts": dict(self.counts)},
        })

    def detail(self, shown: int = RECORDS_SHOWN) -> dict:
        """The run with its steps, its frame grid (as ranges) and its first *shown* frame records."""
        records = [{"index": i, "state": s, "attempts": a, "start": t0, "end": t1, "message": m,
                    "duration": None if t0 is None or t1 is None else t1 - t0}
                   for i, (s, a, t0, t1, m) in sorted(self.records.items())[:shown]]
        grid = list(self.grid())
        return scrub({**self.summary(), "steps": list(self._steps()), "grid": grid,
                      "grid_truncated": len(grid) >= GRID_LIMIT, "records": records, "records_kept": len(self.records), "dropped": dict(self.dropped),
                      "busy": self.busy})

    def detail_json(self) -> str:
        """:meth:`detail` as JSON text, built again only after a new message (the page asks every second)."""
        if self._cache is None or self._cache[0] != self.version:
            self._cache = (self.version, json.dumps(self.detail(), allow_nan=False, default=str))
        return self._cache[1]

    def _steps(self) -> Iterator[dict]:
        names = list(self.steps)
        if any(name in PIPELINE for name in names):
            names = [*PIPELINE, *(name for name in names if name not in PIPELINE)]
        for name in names:
            step = self.steps.get(name) or {"state": "Not run" if self.finished else "Pending", "attempts": 0, "start": None, "end": None,
                                            "message": ""}
            start, end = step.get("start"), step.get("end")
            yield {"name": name, **step, "duration": None if start is None or end is None else end - start}

    def gap_state(self) -> str:
        """What the frames without a record are: plain successes once all are counted, else not known yet."""
        if self.total is None:
            return "Pending"
        gaps = self.total - len(self.records)
        plain = self.counts.get(SUCCESS, 0) - sum(1 for r in self.records.values() if r[0] == SUCCESS)
        dropped = sum(self.dropped.values())
        if plain + dropped >= gaps:
            return "Unlisted" if dropped else SUCCESS
        return "Not run" if self.finished else "Pending"

    def grid(self, limit: int = GRID_LIMIT) -> Iterator[dict]:
        """Consecutive frames of the same look as ranges: ``first``, ``last``, ``count``, ``state``, ...

        Frames without a record take :meth:`gap_state`; at most *limit* ranges.

        >>> run = RunRecord("abc")
        >>> for msg in [{"kind": "map", "total": 5}, {"kind": "frames", "counts": {"Success": 4, "Skipped": 1},
        ...             "records": [{"index": 2, "state": "Skipped", "attempts": 1, "message": "bad"}]}]:
        ...     run.add(msg)
        >>> [(g["first"], g["last"], g["state"]) for g in run.grid()]
        [(0, 1, 'Success'), (2, 2, 'Skipped'), (3, 4, 'Success')]
        """
        gap = (self.gap_state(), False, "")
        total = self.total if self.total is not None else (max(self.records) + 1 if self.records else 0)
        current: list | None = None  # [first, last, look]
        n = 0
        for first, last, look in self._pieces(total, gap):
            if current is not None and current[2] == look and current[1] == first - 1:
                current[1] = last
                continue
            if current is not None:
                yield _segment(*current)
                n += 1
                if n >= limit:
                    return
            current = [first, last, look]
        if current is not None:
            yield _segment(*current)

    def _pieces(self, total: int, gap: tuple) -> Iterator[tuple[int, int, tuple]]:
        previous = -1
        for index in sorted(i for i in self.records if i < total):
            if index > previous + 1:
                yield previous + 1, index - 1, gap
            state, attempts, _, _, message = self.records[index]
            yield index, index, (state, attempts > 1, message)
            previous = index
        if previous + 1 < total:
            yield previous + 1, total - 1, gap


def _segment(first: int, last: int, look: tuple) -> dict:
    state, retried, message = look
    return {"first": first, "last": last, "count": last - first + 1, "state": state, "retried": retried,
            "message": message}


class Runs:
    """The runs a scheduler has seen, newest last, at most *max_runs* of them.

    When a new run would exceed the bound, the oldest finished run goes (or the
    oldest run, when none has finished).  A message for a run that was dropped
    does not bring it back.

    >>> runs = Runs(max_runs=2)
    >>> for run in ("a", "b", "c"):
    ...     runs.add({"kind": "run", "run": run, "state": "Running", "time": 0.0, "parameters": {}})
    >>> list(runs.runs)
    ['b', 'c']
    >>> runs.add({"kind": "step", "run": "a", "name": "fetch", "state": "Success"})
    >>> list(runs.runs)
    ['b', 'c']
    """

    def __init__(self, max_runs: int = 20, max_records: int = 10000):
        self.max_runs = max_runs
        self.max_records = max_records
        self.runs: OrderedDict[str, RunRecord] = OrderedDict()
        self._dropped: deque[str] = deque(maxlen=10 * max_runs)
        self.messages = 0

    def add(self, msg: Any) -> None:
        """Take one ``"daskgif"`` message into account; a malformed one is ignored."""
        if not isinstance(msg, Mapping) or not isinstance(msg.get("run"), str):
            return
        self.messages += 1
        token = msg["run"]
        run = self.runs.get(token)
        if run is None:
            if token in self._dropped:
                return
            run = self.runs[token] = RunRecord(token, self.max_records)
            self._evict()
        run.add(msg)

    def _evict(self) -> None:
        while len(self.runs) > self.max_runs:
            victim = next((token for token, run in self.runs.items() if run.finished), next(iter(self.runs)))
            del self.runs[victim]
            self._dropped.append(victim)

    def to_dict(self) -> dict:
        """Every run's summary, newest first, and the bounds."""
        now = time.time()
        return {"now": now, "max_runs": self.max_runs, "max_frame_records": self.max_records,
                "runs": [run.summary() for run in reversed(self.runs.values())]}
