"""The runs page's model: what a scheduler has seen of each run, bounded, from messages none of which is trusted.

Any client may log a message on the topic, so each is checked first (:func:`check_message`); one the
page cannot use is dropped whole, with one log line.  A run names its steps in its first message.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from itertools import groupby, islice
from typing import Any

from daskgif.core.state import FAILED, RETRYING, RUNNING, SUCCESS
from daskgif.redact import scrub

__all__ = ["Runs", "RunRecord", "Malformed", "check_message", "shorten", "CANCELLED", "TEXT_CHARS", "MAX_FIELDS"]

logger = logging.getLogger(__name__)

#: A run (or a step) stopped from outside: its tasks were let go of before it ended.
CANCELLED = "Cancelled"
RUN_STATES = (RUNNING, SUCCESS, FAILED, CANCELLED)
#: The longest text the page keeps (a parameter, a message, a name); longer ones end with an ellipsis.
TEXT_CHARS = 2000
#: The most parameters, named steps and frame states (counted) one run keeps.
MAX_FIELDS = 50
RUN_TOKEN = re.compile(r"[0-9A-Za-z_-]{1,100}")
#: The most frame records one detail answer carries (the model may keep more; the page says so).
RECORDS_SHOWN = 1000
#: The most ranges one frame grid has (frames past them are left out of the grid, not of the counts).
GRID_LIMIT = 2000


def shorten(value: Any) -> str:
    """A message as short, masked text (masked first: a cut must not hide a secret from the mask).

    >>> shorten("https://me:pw@host/" + "a" * 5000)[:30], len(shorten("a" * 5000))
    ('https://me:***@host/aaaaaaaaaa', 2000)
    """
    text = scrub(str(value or ""))
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


class Malformed(ValueError):
    """A message the runs page cannot use; says why, never what it held (it may be huge, or secret)."""


def _what(value: Any) -> str:  # for a log line: its type, or the masked start of a string
    if not isinstance(value, str):
        return type(value).__name__
    text = scrub(value)
    return f"{text[:20]!r}{'…' if len(text) > 20 else ''}"


def _field(accepts: Callable[[Any], Any], expected: str, convert: Callable[[Any], Any] = lambda v: v) -> Callable:
    def read(value: Any) -> Any:
        if accepts(value):
            return convert(value)
        raise Malformed(f"must be {expected}, got {_what(value)}")

    return read


def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_number = _field(lambda v: v is None or _real(v), "a finite number or null")  # a time or a duration
_count = _field(lambda v: v is None or (_real(v) and isinstance(v, int) and v >= 0), "a non-negative integer or null")
_name = _field(lambda v: isinstance(v, str) and v, "a non-empty string", shorten)
_message = _field(lambda v: v is None or isinstance(v, str), "a string or null", shorten)
_text_or_none = _field(lambda v: v is None or isinstance(v, str), "a string or null",
                       lambda v: None if v is None else shorten(v))
_run_state = _field(lambda v: v in RUN_STATES, f"one of {', '.join(RUN_STATES)}")


def _items(value: Any, kind: type | tuple[type, ...], what: str, limit: int | None = MAX_FIELDS) -> Any:
    if value is not None and not isinstance(value, kind):
        raise Malformed(f"must be {what} or null, got {_what(value)}")
    if value is not None and limit is not None and len(value) > limit:
        raise Malformed(f"must hold at most {limit} items, got {len(value)}")
    return value


def _value(value: Any) -> Any:  # a parameter's: a finite number, a flag, null or text; else (cut) JSON text
    if value is None or isinstance(value, bool) or _real(value):
        return value
    if isinstance(value, str):
        return shorten(value)
    try:
        return shorten(json.dumps(value, default=str))
    except (ValueError, RecursionError):
        raise Malformed("holds a value that is not JSON") from None


def _parameters(value: Any) -> dict | None:
    value = _items(value, Mapping, "a dict")
    if value is not None and not all(isinstance(name, str) for name in value):
        raise Malformed("must be named by strings")
    return None if value is None else {shorten(name): _value(v) for name, v in value.items()}


def _steps(value: Any) -> list[str] | None:
    return None if _items(value, (list, tuple), "a list") is None else [_name(name) for name in value]


def _counts(value: Any) -> dict[str, int]:
    value = _items(value, Mapping, "a dict") or {}
    return {_name(state): _count(n) or 0 for state, n in value.items()}


def _records(value: Any) -> list[dict]:
    value = _items(value, (list, tuple), "a list", limit=None) or ()  # kept up to max_records: see RunRecord
    return [_fields(record, RECORD, ("index", "state"), f"record {i}") for i, record in enumerate(value)]


RECORD: dict[str, Callable[[Any], Any]] = {"index": _count, "state": _name, "attempts": _count, "start": _number,
                                           "end": _number, "message": _message}
#: What each kind of message may hold, and how each field is read (a field left out is ``None``).
FIELDS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "run": {"state": _run_state, "time": _number, "parameters": _parameters, "out": _text_or_none, "message": _message,
            "size": _count, "steps": _steps, "batch": _text_or_none},
    "step": {"name": _name, "state": _name, "attempts": _count, "start": _number, "end": _number,
             "message": _message},
    "map": {"name": _text_or_none, "total": _count},
    "frames": {"name": _text_or_none, "counts": _counts, "busy": _number, "records": _records},
}
REQUIRED = {"run": ("state",), "step": ("name", "state"), "map": (), "frames": ()}


def _fields(msg: Any, fields: Mapping[str, Callable[[Any], Any]], required: tuple[str, ...], where: str) -> dict:
    if not isinstance(msg, Mapping):
        raise Malformed(f"{where} must be a dict, got {_what(msg)}")
    checked = {}
    for name, read in fields.items():
        try:
            if name in required and msg.get(name) is None:
                raise Malformed("is missing")
            checked[name] = read(msg.get(name))
        except Malformed as e:
            raise Malformed(f"{where}: {name!r} {e}") from None
    return checked


def check_message(msg: Any) -> dict:
    """*msg* with the fields the page uses checked, text masked and cut, the others left out; else :class:`Malformed`.

    >>> check_message({"kind": "map", "run": "r1", "total": 3, "other": "left out"})
    {'kind': 'map', 'run': 'r1', 'name': None, 'total': 3}
    >>> check_message({"kind": "map", "run": "r1", "total": "3"})
    Traceback (most recent call last):
    ...
    daskgif.views.runs.Malformed: map message of run 'r1': 'total' must be a non-negative integer or null, got '3'
    """
    if not isinstance(msg, Mapping):
        raise Malformed(f"a message must be a dict, got {_what(msg)}")
    run, kind = msg.get("run"), msg.get("kind")
    if not isinstance(run, str) or not RUN_TOKEN.fullmatch(run):
        raise Malformed(f"'run' must be a run token (1 to 100 letters, digits, '-' or '_'), got {_what(run)}")
    if kind not in FIELDS:
        raise Malformed(f"message of run {run!r}: 'kind' must be one of {', '.join(FIELDS)}, got {_what(kind)}")
    return {"kind": kind, "run": run, **_fields(msg, FIELDS[kind], REQUIRED[kind], f"{kind} message of run {run!r}")}


def elapsed(start: float | None, end: float | None) -> float | None:
    """Seconds from *start* to *end*, once both are known."""
    return None if start is None or end is None else end - start


class RunRecord:
    """What the scheduler has seen of one run: its steps, its frame counts and at most *max_records* notable frames.

    Frame records are tuples ``(state, attempts, start, end, message)`` by map index; plain successes
    are only counted, and repeated messages stored once.

    >>> run = RunRecord("abc", max_records=1)
    >>> run.add({"kind": "map", "name": "write-frame", "total": 3})
    >>> run.add({"kind": "frames", "counts": {"Success": 1, "Failed": 2}, "records": [
    ...     {"index": 1, "state": "Failed", "attempts": 3, "message": "OSError: disk full"},
    ...     {"index": 2, "state": "Failed", "attempts": 3, "message": "OSError: disk full"}]})
    >>> run.counts, sorted(run.records), run.dropped
    ({'Success': 1, 'Failed': 2}, [1], {'Failed': 1})
    """

    def __init__(self, run: str, max_records: int = 10000):
        self.run, self.max_records = run, max_records
        self.state = RUNNING
        self.start: float | None = None
        self.end: float | None = None
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
        """Mark the run ``Cancelled`` by *reason*, unless it succeeded (a failed one failed by the stop)."""
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
        return scrub({"run": self.run, "state": self.state, "start": self.start, "end": self.end,
                      "duration": elapsed(self.start, self.end), "parameters": self.parameters, "batch": self.batch,
                      "out": self.out, "message": self.message, "size": self.size,
                      "frames": {"total": self.total, "done": sum(self.counts.values()), "counts": dict(self.counts)}})

    def detail(self, shown: int = RECORDS_SHOWN) -> dict:
        """The run with its steps, its frame grid (as ranges) and its first *shown* frame records."""
        records = [{"index": i, "state": s, "attempts": a, "start": t0, "end": t1, "message": m,
                    "duration": elapsed(t0, t1)} for i, (s, a, t0, t1, m) in sorted(self.records.items())[:shown]]
        grid = self.grid()
        return scrub({**self.summary(), "steps": list(self._steps()), "grid": grid,
                      "grid_truncated": len(grid) >= GRID_LIMIT, "records": records,
                      "records_kept": len(self.records), "dropped": dict(self.dropped), "busy": self.busy})

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
            yield {"name": name, **step, "duration": elapsed(step.get("start"), step.get("end"))}

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

    def grid(self, limit: int = GRID_LIMIT) -> list[dict]:
        """Consecutive frames of the same look as at most *limit* ranges; those without a record: :meth:`gap_state`.

        >>> run = RunRecord("abc")
        >>> for msg in [{"kind": "map", "total": 5}, {"kind": "frames", "counts": {"Success": 4, "Skipped": 1},
        ...             "records": [{"index": 2, "state": "Skipped", "attempts": 1, "message": "bad"}]}]:
        ...     run.add(msg)
        >>> [(g["first"], g["last"], g["state"]) for g in run.grid()]
        [(0, 1, 'Success'), (2, 2, 'Skipped'), (3, 4, 'Success')]
        """
        gap = (self.gap_state(), False, "")
        total = self.total if self.total is not None else (max(self.records) + 1 if self.records else 0)
        pieces, previous = [], -1  # (first, last, look): the records and the gaps between them, in order
        for index in [*sorted(i for i in self.records if i < total), total]:
            if index > previous + 1:
                pieces.append((previous + 1, index - 1, gap))
            if index < total:
                state, attempts, _, _, message = self.records[index]
                pieces.append((index, index, (state, attempts > 1, message)))
            previous = index
        grid = []
        for (state, retried, message), same in islice(groupby(pieces, key=lambda piece: piece[2]), limit):
            same = list(same)
            first, last = same[0][0], same[-1][1]
            grid.append({"first": first, "last": last, "count": last - first + 1, "state": state,
                         "retried": retried, "message": message})
        return grid


class Runs:
    """The runs a scheduler has seen, newest last, at most *max_runs*: the oldest finished one (else the oldest) goes.

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
        self.max_runs, self.max_records = max_runs, max_records
        self.runs: OrderedDict[str, RunRecord] = OrderedDict()
        self._dropped: deque[str] = deque(maxlen=10 * max_runs)
        self._stopped: OrderedDict[str, str] = OrderedDict()  # runs stopped before their first message came

    def add(self, msg: Any) -> None:
        """Take one ``"daskgif"`` message into account; a malformed one is dropped with one log line."""
        try:
            msg = check_message(msg)
        except Malformed as e:
            logger.warning("daskgif runs page dropped a message: %s", e)
            return
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
        """A task of run *token* still to run, or running, was let go of (by *reason*); marked now or when it comes.

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
        return {"now": time.time(), "max_runs": self.max_runs, "max_frame_records": self.max_records,
                "runs": [run.summary() for run in reversed(self.runs.values())]}
