"""Kinds of value a run parameter or setting may take: the API, the command line, parameter files and
``dask.config`` all check through a :class:`Kind`, so a bad value reads the same wherever it came from.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from daskgif.redact import mask

__all__ = ["Kind", "check", "parse_duration", "check_cron", "check_url", "normalise_keys"]


@dataclass(frozen=True)
class Kind:
    """A kind of value: what it must be (completing "``<name>`` must be ..."), whether a value is one, how
    command-line text becomes one (*parse*; also in parameter files with *text_in_files*), its ``--help`` *metavar*;
    a *secret* value (credentials) is never shown, not even masked.

    >>> even = Kind("an even integer", lambda v: isinstance(v, int) and v % 2 == 0, int)
    >>> even.reason(3), even.reason(4), even.from_text("8"), even.reason(even.from_text("x"))
    ('must be an even integer, got 3', None, 8, "must be an even integer, got 'x'")
    """

    expected: str
    accepts: Callable[[Any], bool]
    parse: Callable[[str], Any] = str
    text_in_files: bool = False
    metavar: str = "TEXT"
    secret: bool = False

    def reason(self, value: Any) -> str | None:
        """``None`` if *value* is of this kind, else why not: ``"must be ..., got ..."`` (masked).

        >>> Kind("a mapping", lambda v: isinstance(v, dict), secret=True).reason('{"secret": "s3cr3t"')
        'must be a mapping, got a str (not shown: it may hold credentials)'
        """
        if self.accepts(value):
            return None
        got = f"a {type(value).__name__} (not shown: it may hold credentials)" if self.secret else repr(value)
        return mask(f"must be {self.expected}, got {got}")

    def from_text(self, text: str) -> Any:
        """The value that *text* stands for, or *text* itself when it stands for none (so the check fails on it)."""
        try:
            return self.parse(text)
        except (ValueError, TypeError):
            return text


def check(name: str, value: Any, kind: Kind) -> Any:
    """Return *value* if it is of *kind*, else raise ``ValueError`` naming *name*.

    >>> check("retries", -1, INTEGER)
    Traceback (most recent call last):
    ...
    ValueError: retries must be a non-negative integer, got -1
    """
    reason = kind.reason(value)
    if reason is not None:
        raise ValueError(f"{name} {reason}")
    return value


def or_none(kind: Kind, word: str = "None") -> Kind:
    """*kind*, or ``None`` (called *word*: ``null`` in configuration).

    >>> or_none(TEXT).reason(None), or_none(TEXT, "null").expected
    (None, 'a non-empty string or null')
    """
    return Kind(f"{kind.expected} or {word}", lambda v: v is None or kind.accepts(v), kind.parse, kind.text_in_files,
                kind.metavar)


def _number(value: Any, types: type | tuple[type, ...] = (int, float)) -> bool:
    """Whether *value* is a finite number of *types*; ``True`` is no number."""
    return isinstance(value, types) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int = 0, high: int | None = None) -> Kind:
    """Integers from *low* (0 or 1) up to *high*.

    >>> integer(0, 65535).expected, integer(1).expected
    ('a non-negative integer up to 65535', 'a positive integer')
    """
    words = "a positive integer" if low else "a non-negative integer"
    return Kind(words + ("" if high is None else f" up to {high}"),
                lambda v: _number(v, int) and v >= low and (high is None or v <= high), int, metavar="INTEGER")


def choice(*choices: Any) -> Kind:
    """One of *choices*, compared with ``==`` (``True`` is not ``1``).

    >>> choice("raise", "skip").expected
    "'raise' or 'skip'"
    """
    words = [repr(c) for c in choices]
    return Kind(words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}",
                lambda v: any(v == c and type(v) is type(c) for c in choices),
                metavar=f"[{'|'.join(map(str, choices))}]")


def _number_from(text: str) -> int | float:
    """``"10"`` -> ``10``, ``"0.5"`` -> ``0.5``: a whole number stays an integer."""
    value = float(text)
    return int(value) if value.is_integer() else value


TEXT = Kind("a non-empty string", lambda v: isinstance(v, str) and bool(v))
INTEGER = integer(0)
POSITIVE_INTEGER = integer(1)
SECONDS = Kind("a non-negative number of seconds", lambda v: _number(v) and v >= 0, _number_from, metavar="SECONDS")
POSITIVE_SECONDS = Kind("a positive number of seconds", lambda v: _number(v) and v > 0, _number_from, metavar="SECONDS")
POSITIVE = Kind("a positive number", lambda v: _number(v) and v > 0, _number_from)
FRACTION = Kind("a number from 0 to 1", lambda v: _number(v) and 0 <= v <= 1, _number_from)
FLAG = Kind("true or false", lambda v: isinstance(v, bool),
            lambda text: {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}[text.lower()])
DELIMITER = Kind("non-empty bytes (as text: with Python escapes such as '\\n')",
                 lambda v: isinstance(v, bytes) and bool(v), lambda text: codecs.escape_decode(text.encode())[0],
                 text_in_files=True)
STORAGE_OPTIONS = Kind("a mapping of fsspec options or None (as text: a JSON object)",  # other JSON stays text
                       lambda v: v is None or isinstance(v, Mapping),
                       lambda text: found if isinstance(found := json.loads(text), dict) else text, secret=True)
FRAMES_PER_TASK = Kind("'auto' or a positive integer", lambda v: v == "auto" or (_number(v, int) and v > 0),
                       lambda text: text if text == "auto" else int(text), metavar="N|auto")
HOOKS = Kind("a sequence of callables", lambda v: isinstance(v, Sequence) and not isinstance(v, (str, bytes))
             and all(map(callable, v)))
PROTOCOLS = Kind("a list of protocol names", lambda v: isinstance(v, (list, tuple)) and all(
    isinstance(p, str) and p for p in v))

#: Days, hours, minutes and seconds, largest first, each at most once.
DURATION_UNITS = re.compile("".join(rf"(?:(\d+(?:\.\d*)?|\.\d+){unit})?" for unit in "dhms"))


def parse_duration(text: str | float, name: str = "duration") -> float:
    """Return the seconds in a duration (``d``, ``h``, ``m``, ``s``, largest first, or a number), named *name*.

    >>> parse_duration("24h"), parse_duration("1h30m"), parse_duration("0.5")
    (86400.0, 5400.0, 0.5)
    >>> parse_duration("30 minutes", "every")
    Traceback (most recent call last):
    ...
    ValueError: every must be a positive duration such as '24h', '30m', '10s', '1h30m' or a number of seconds, \
got '30 minutes'
    """
    return _seconds_in(check(name, text, DURATION))  # type: ignore[return-value]


def _seconds_in(text: Any) -> float | None:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        return None
    spec = str(text).strip().lower()
    try:
        seconds = float(spec)
    except ValueError:
        found = DURATION_UNITS.fullmatch(spec)
        if found is None or not any(found.groups()):
            return None
        seconds = sum(float(n) * unit for n, unit in zip(found.groups(), (86400, 3600, 60, 1)) if n)
    return seconds if 0 < seconds < float("inf") else None


def check_cron(expr: str) -> str:
    """Return *expr* if it is a valid cron expression that fires at some time, else raise ``ValueError``.

    >>> check_cron("0 0 31 2 *")  # 31 February: valid fields, no date
    Traceback (most recent call last):
    ...
    ValueError: cron must be a cron expression that fires, such as '0 2 * * *' (minute hour day month weekday), \
got '0 0 31 2 *'
    """
    return check("cron", expr, CRON)


def _is_cron(expr: Any) -> bool:
    from croniter import CroniterError, croniter

    if not isinstance(expr, str) or not croniter.is_valid(expr):
        return False
    try:  # valid fields may name no date (31 February): croniter then fails on every next time asked
        croniter(expr, 0.0).get_next(float)
    except CroniterError:
        return False
    return True


def _is_zone(name: Any) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return isinstance(name, str) and bool(name) and ZoneInfo(name) is not None
    except (ZoneInfoNotFoundError, ValueError):
        return False


def check_url(url: str, name: str = "notify") -> str:
    """Return *url* if it is an http(s) URL with a host, else raise ``ValueError`` (masked).

    >>> check_url("file:///etc/passwd")
    Traceback (most recent call last):
    ...
    ValueError: notify must be an http:// or https:// URL with a host, got 'file:///etc/passwd'
    """
    return check(name, url, WEBHOOK)


DURATION = Kind("a positive duration such as '24h', '30m', '10s', '1h30m' or a number of seconds",
                lambda v: _seconds_in(v) is not None)
CRON = Kind("a cron expression that fires, such as '0 2 * * *' (minute hour day month weekday)", _is_cron)
ZONE = Kind("an IANA time zone such as Europe/Oslo or UTC", _is_zone)
WEBHOOK = Kind("an http:// or https:// URL with a host",
               lambda v: isinstance(v, str) and urlsplit(v).scheme in ("http", "https") and bool(urlsplit(v).hostname))


def normalise_keys(value: Any) -> Any:
    """*value* with ``_`` as ``-`` in the keys of its mappings (``DASK_DASKGIF__TASK_TIMEOUT__WRITE_FRAME=5`` gives
    ``write_frame``).

    >>> normalise_keys({"write_frame": 5, "fetch": None}), normalise_keys(30)
    ({'write-frame': 5, 'fetch': None}, 30)
    """
    if not isinstance(value, Mapping):
        return value
    return {k.replace("_", "-") if isinstance(k, str) else k: normalise_keys(v) for k, v in value.items()}
