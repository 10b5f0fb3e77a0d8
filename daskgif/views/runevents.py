"""Checking the messages the runs page reads: any client may send one, so none is trusted.

:func:`check_message` returns a message with each field the page uses checked
(types, finite numbers, bounded sizes) and its text masked
(:func:`daskgif.redact.scrub`) and cut to :data:`TEXT_CHARS`; it raises
:class:`Malformed`, saying why without repeating what the message held, for a
message the page cannot use.  :mod:`daskgif.views.runs` drops those whole.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from daskgif.core.state import FAILED, RUNNING, SUCCESS
from daskgif.redact import scrub

__all__ = ["Malformed", "check_message", "shorten", "CANCELLED", "RUN_STATES", "TEXT_CHARS", "MAX_FIELDS"]

#: A run (or a step) stopped from outside: its tasks were let go of before it ended.
CANCELLED = "Cancelled"
RUN_STATES = (RUNNING, SUCCESS, FAILED, CANCELLED)
#: The longest text the page keeps (a parameter, a message, a name); longer ones end with an ellipsis.
TEXT_CHARS = 2000
#: The most parameters, named steps and frame states (counted) one run keeps.
MAX_FIELDS = 50
RUN_TOKEN = re.compile(r"[0-9A-Za-z_-]{1,100}")


def shorten(value: Any) -> str:
    """A message as short, masked text (masked first: a cut must not hide a secret from the mask).

    >>> shorten("https://me:pw@host/" + "a" * 5000)[:30], len(shorten("a" * 5000))
    ('https://me:***@host/aaaaaaaaaa', 2000)
    """
    text = scrub(str(value or ""))
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


class Malformed(ValueError):
    """A message the runs page cannot use; says why, never what it held (it may be huge, or secret)."""


def _what(value: Any) -> str:
    """What *value* is, for a log line: its type, or the masked start of a string."""
    if not isinstance(value, str):
        return type(value).__name__
    text = scrub(value)
    return f"{text[:20]!r}{'…' if len(text) > 20 else ''}"


def _number(value: Any) -> float | None:
    """A time or a duration: a finite number, or ``None``."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
        return value
    raise Malformed(f"must be a finite number or null, got {_what(value)}")


def _count(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise Malformed(f"must be a non-negative integer or null, got {_what(value)}")


def _name(value: Any) -> str:
    if isinstance(value, str) and value:
        return shorten(value)
    raise Malformed(f"must be a non-empty string, got {_what(value)}")


def _message(value: Any) -> str:
    if value is None or isinstance(value, str):
        return shorten(value)
    raise Malformed(f"must be a string or null, got {_what(value)}")


def _out(value: Any) -> str | None:
    return None if value is None else _message(value)


def _run_state(value: Any) -> str:
    if value in RUN_STATES:
        return value
    raise Malformed(f"must be one of {', '.join(RUN_STATES)}, got {_what(value)}")


def _items(value: Any, kind: type | tuple[type, ...], what: str, limit: int | None = MAX_FIELDS) -> Any:
    if value is not None and not isinstance(value, kind):
        raise Malformed(f"must be {what} or null, got {_what(value)}")
    if value is not None and limit is not None and len(value) > limit:
        raise Malformed(f"must hold at most {limit} items, got {len(value)}")
    return value


def _value(value: Any) -> Any:
    """A parameter's value: a finite number, a flag, null or text; anything else as (cut) JSON text."""
    if value is None or isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value)):
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
    "run": {"state": _run_state, "time": _number, "parameters": _parameters, "out": _out, "message": _message,
            "size": _count, "steps": _steps, "batch": _out},
    "step": {"name": _name, "state": _name, "attempts": _count, "start": _number, "end": _number,
             "message": _message},
    "map": {"name": _out, "total": _count},
    "frames": {"name": _out, "counts": _counts, "busy": _number, "records": _records},
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
    """*msg* with each field the page uses checked, its text masked and cut; raise :class:`Malformed` if unusable.

    Fields the page does not use are left out.

    >>> check_message({"kind": "map", "run": "r1", "total": 3, "other": "left out"})
    {'kind': 'map', 'run': 'r1', 'name': None, 'total': 3}
    >>> check_message({"kind": "map", "run": "r1", "total": "3"})
    Traceback (most recent call last):
    ...
    daskgif.views.runevents.Malformed: map message of run 'r1': 'total' must be a non-negative integer or null, got '3'
    """
    if not isinstance(msg, Mapping):
        raise Malformed(f"a message must be a dict, got {_what(msg)}")
    run, kind = msg.get("run"), msg.get("kind")
    if not isinstance(run, str) or not RUN_TOKEN.fullmatch(run):
        raise Malformed(f"'run' must be a run token (1 to 100 letters, digits, '-' or '_'), got {_what(run)}")
    if kind not in FIELDS:
        raise Malformed(f"message of run {run!r}: 'kind' must be one of {', '.join(FIELDS)}, got {_what(kind)}")
    return {"kind": kind, "run": run, **_fields(msg, FIELDS[kind], REQUIRED[kind], f"{kind} message of run {run!r}")}
