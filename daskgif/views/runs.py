"""The runs page's model: what a scheduler has seen of each run, bounded.

:class:`Runs` keeps a :class:`RunRecord` per run, newest last, at most
``max_runs`` of them; a record counts its frames by state and keeps at most
``max_records`` notable frames (plain successes are counted, never kept one by
one).  The scheduler plugin of :mod:`daskgif.views.dashboard` feeds it the
``"daskgif"`` messages of :mod:`daskgif.core.events`; its HTTP handlers serve
:meth:`Runs.to_dict` and :meth:`RunRecord.detail_json`.  What it shows is masked
(:func:`daskgif.redact.scrub`).

Any client may log a message on the topic, so each is checked when it arrives
(:func:`daskgif.views.runevents.check_message`): a message the page cannot use
is dropped whole, with one log line, and every text kept is masked and cut to
:data:`~daskgif.views.runevents.TEXT_CHARS` characters.  A run whose
tasks the scheduler lets go of before it ends (cancelled, its client gone) is
marked ``Cancelled`` (:meth:`Runs.stop`).  The page knows no pipeline: a run
names its steps in its first message (``steps``), else they show as they come.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from typing import Any

from daskgif.core.state import FAILED, RETRYING, RUNNING, SUCCESS
from daskgif.redact import scrub
from daskgif.views.runevents import CANCELLED, MAX_FIELDS, Malformed, check_message, shorten

__all__ = ["Runs", "RunRecord", "CANCELLED"]

logger = logging.getLogger(__name__)

#: The most frame records one detail answer carries (the model may keep more; the page says so).
RECORDS_SHOWN = 1000
#: The most ranges one frame grid has (frames past them are left out of the grid, not of the counts).
GRID_LIMIT = 2000


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
        self.batch: str | None = None  # the id of its batch of inputs, if any
        self.out: str | None = None
        self.message = ""
        self.size: int | None = None
        self.steps: dict[str, dict] = {}
        self.order: list[str] = []  # the run's steps as it named them
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
        return self.state in (SUCCESS, FAILED, CANCELLED)

    def add(self, msg: Mapping[str, Any]) -> None:
        """Take one message of :mod:`daskgif.core.events` into account; raise :class:`Malformed` if unusable."""
        self.take(check_message({**msg, "run": self.run}))

    def take(self, msg: Mapping[str, Any]) -> None:
        """Take one message into account, as :func:`check_message` returned it."""
        self.version += 1
        kind, stamp = msg["kind"], msg.get("time")
        if kind == "run":
            if msg["state"] == RUNNING:
                self.start = stamp if self.start is None else self.start
                self.parameters = msg["parameters"] or self.parameters
                self.out = msg["out"] if msg["out"] is not None else self.out
                self.batch = msg["batch"] or self.batch
                self.order = msg["steps"] or self.order
            elif msg["state"] == CANCELLED:  # said by whoever stopped it: the best reason there is
                self.stop(msg["message"] or "cancelled", stamp)
                if self.state == CANCELLED and msg["message"]:
                    self.message = msg["message"]
            elif self.state != CANCELLED:  # a run stopped from outside may still end, failed by the stop
                self.state, self.end = msg["state"], stamp
                self.message = msg["message"] or self.message
                self.size = msg["size"] if msg["size"] is not None else self.size
                self._begin(stamp)
        elif kind == "step":
            name, state = msg["name"], msg["state"]
            if name not in self.steps and len(self.steps) >= MAX_FIELDS:
                return
            if self.state == CANCELLED and state in (RUNNING, RETRYING, FAILED):
                state = CANCELLED
            self.steps[name] = {"state": state, "attempts": msg["attempts"], "start": msg["start"],
                                "end": msg["end"], "message": self._intern(msg["message"])}
            self._begin(msg["start"])
        elif kind == "map":
            self.total = msg["total"]
        elif kind == "frames":
            for state, n in msg["counts"].items():
                if state in self.counts or len(self.counts) < MAX_FIELDS:
                    self.counts[state] = self.counts.get(state, 0) + n
            self.busy += msg["busy"] or 0.0
            for record in msg["records"]:
                self._keep(record)

    def _begin(self, stamp: float | None) -> None:
        if self.start is None:
            self.start = min((s["start"] for s in self.steps.values() if s.get("start") is not None), default=stamp)

    def stop(self, reason: str, stamp: float | None) -> None:
        """Mark the run ``Cancelled`` by *reason*: a task of it still to run, or running, was let go of.

        A run that succeeded stays so.  A failed one becomes ``Cancelled``: its
        tasks still to run were stopped, so its failure was the stop's doing
        (a cancelled future's error, say).  Later messages leave it so.
        """
        if self.state in (SUCCESS, CANCELLED):
            return
        self.version += 1
        self.state, self.message = CANCELLED, shorten(reason)
        self.end = stamp if stamp is not None else time.time()
        self._begin(self.end)

    def _keep(self, record: Mapping[str, Any]) -> None:
        index, state = record["index"], record["state"]
        if index not in self.records and len(self.records) >= self.max_records:
            if state in self.dropped or len(self.dropped) < MAX_FIELDS:
                self.dropped[state] = self.dropped.get(state, 0) + 1
            return
        self.records[index] = (self._intern(state), record["attempts"] or 0, record["start"], record["end"],
                               self._intern(record["message"]))

    def _intern(self, message: Any) -> str:
        text = shorten(message)
        return self._texts.setdefault(text, text) if len(self._texts) < 4 * self.max_records else text

    def summary(self) -> dict:
        """The run in one JSON-able line, for the runs table (``duration`` once it has ended)."""
        done = sum(self.counts.values())
        return scrub({
            "run": self.run, "state": self.state, "start": self.start, "end": self.end,
            "duration": None if self.start is None or self.end is None else self.end - self.start,
            "parameters": self.parameters, "batch": self.batch, "out": self.out, "message": self.message,
            "size": self.size,
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
        names = [*self.order, *(name for name in self.steps if name not in self.order)]
        for name in names:
            step = self.steps.get(name) or {"state": "Not run" if self.finished else "Pending", "attempts": 0,
                                            "start": None, "end": None, "message": ""}
            if self.state == CANCELLED and step["state"] in (RUNNING, RETRYING):
                step = {**step, "state": CANCELLED}
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
        self._stopped: OrderedDict[str, str] = OrderedDict()  # runs stopped before their first message came
        self.messages = 0

    def add(self, msg: Any) -> None:
        """Take one ``"daskgif"`` message into account; a malformed one is dropped with one log line."""
        try:
            msg = check_message(msg)
        except Malformed as e:
            logger.warning("daskgif runs page dropped a message: %s", e)
            return
        self.messages += 1
        token = msg["run"]
        run = self.runs.get(token)
        if run is None:
            if token in self._dropped:
                return
            run = self.runs[token] = RunRecord(token, self.max_records)
            self._evict()
        run.take(msg)
        if token in self._stopped:
            run.stop(self._stopped.pop(token), msg["time"])

    def stop(self, token: str, reason: str) -> None:
        """A task of run *token* still to run, or running, was let go of (by *reason*): see :meth:`RunRecord.stop`.

        The scheduler may let go of a run's tasks before the run's first message
        arrives: such a run is remembered (a bounded number of them) and marked
        when it comes.

        >>> runs = Runs()
        >>> runs.stop("r1", "cancelled by client c1")
        >>> runs.add({"kind": "run", "run": "r1", "state": "Running", "time": 1.0})
        >>> runs.runs["r1"].state, runs.runs["r1"].message
        ('Cancelled', 'cancelled by client c1')
        """
        run = self.runs.get(token)
        if run is not None:
            run.stop(reason, time.time())
        elif token not in self._dropped:
            self._stopped[token] = reason
            while len(self._stopped) > 10 * self.max_runs:
                self._stopped.popitem(last=False)

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
