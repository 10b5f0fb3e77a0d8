"""Run parameters from a file: ``daskgif run --params run.yaml``.

A parameter file is a YAML or JSON mapping of :func:`daskgif.build_graph`
arguments and schedule options, the same names as the command line's options
(``data_file`` or ``data-file``)::

    url: https://example.com/all-images.img
    data_file: /data/image-data.img
    out: s3://bucket/gifs/clip.gif
    storage_options: {anon: false}
    delimiter: '\\r\\n\\r\\n'     # Python escapes; or bytes (!!binary)
    on_error: skip
    frames_per_task: auto
    every: 24h
    history: /var/log/daskgif.jsonl

:func:`load_params` reads one (through fsspec, so any path) and
:func:`check_params` checks it: an unknown key or a bad value is a
``ValueError`` naming the key.  The schedule options (:data:`SCHEDULE_KEYS`)
belong in the file because they describe the job as much as its inputs do;
where it runs (``--workers``, ``--scheduler``) stays on the command line.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from daskgif.redact import mask

__all__ = ["load_params", "check_params", "GRAPH_KEYS", "SCHEDULE_KEYS", "ALLOWED"]


def _int_in(low: int, high: int | None = None) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            kind = f"an integer from {low} to {high}" if high is not None else \
                {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer of at least {low}")
            raise ValueError(f"must be {kind}, got {value!r}")
        return value
    return check


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _text(value)


def _seconds(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < float("inf"):
        raise ValueError(f"must be a non-negative number of seconds, got {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _mapping_or_none(value: Any) -> dict | None:
    if value is not None and not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping of fsspec options, got {value!r}")
    return None if value is None else dict(value)


def _delimiter(value: Any) -> bytes:
    r"""Bytes as they are; text with Python escapes (``'\n\n\n\n'``), as ``--delimiter`` takes it."""
    if isinstance(value, str):
        try:
            value = codecs.escape_decode(value.encode("utf-8"))[0]
        except ValueError as e:
            raise ValueError(f"must be text with Python escapes such as '\\n', got {value!r} ({e})") from None
    if not isinstance(value, bytes) or not value:
        raise ValueError(f"must be non-empty text (Python escapes allowed) or bytes, got {value!r}")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    return check


def _frames_per_task(value: Any) -> int | str:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ValueError(f"must be 'auto' or a positive integer, got {value!r}")


def _every(value: Any) -> str | float:
    from daskgif.ops.schedule import parse_duration

    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"must be a duration such as '24h' or a number of seconds, got {value!r}")
    parse_duration(value)
    return value


def _cron(value: Any) -> str:
    from daskgif.ops.schedule import check_cron

    return check_cron(value)


def _zone(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(_text(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"must be an IANA time zone such as Europe/Oslo or UTC, got {value!r}") from None
    return value


def _webhook(value: Any) -> str:
    from daskgif.ops.notify import check_url

    return check_url(_text(value))


#: ``build_graph`` arguments a file may give, and the check of each (``on_state`` is code, not data).
GRAPH_KEYS: dict[str, Callable[[Any], Any]] = {
    "url": _text_or_none,
    "data_file": _text,
    "out": _text,
    "frames_dir": _text_or_none,
    "delimiter": _delimiter,
    "duration": _int_in(0, 655350),
    "loop": _int_in(0, 65535),
    "retries": _int_in(0),
    "retry_delay": _seconds,
    "force": _flag,
    "storage_options": _mapping_or_none,
    "on_error": _choice("raise", "skip"),
    "frames_per_task": _frames_per_task,
}

#: Schedule options a file may give (``daskgif run``'s ``--every``, ``--cron``, ...).
SCHEDULE_KEYS: dict[str, Callable[[Any], Any]] = {
    "every": _every,
    "cron": _cron,
    "cron_tz": _zone,
    "max_runs": _int_in(1),
    "notify": _webhook,
    "history": _text,
}

#: Every key a parameter file may hold.
ALLOWED = {**GRAPH_KEYS, **SCHEDULE_KEYS}


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return *params* checked, keys with ``_`` (``data-file`` is ``data_file``), the delimiter as bytes.

    Parameters
    ----------
    params : mapping
        Keys of :data:`ALLOWED`; ``null`` (``None``) is allowed where
        ``build_graph`` takes ``None`` (``url``, ``frames_dir``,
        ``storage_options``), and leaves the default for the others.

    Raises
    ------
    ValueError
        Naming the first unknown key (and listing the allowed ones) or the
        first bad value's key.

    Examples
    --------
    >>> check_params({"data-file": "x.img", "delimiter": "\\\\r\\\\n", "every": "24h", "on_error": None})
    {'data_file': 'x.img', 'delimiter': b'\\r\\n', 'every': '24h'}
    >>> check_params({"duraton": 40})
    Traceback (most recent call last):
    ...
    ValueError: unknown parameter 'duraton'; allowed: url, data_file, out, frames_dir, delimiter, duration, loop, retries, retry_delay, force, storage_options, on_error, frames_per_task, every, cron, cron_tz, max_runs, notify, history
    >>> check_params({"duration": -1})
    Traceback (most recent call last):
    ...
    ValueError: parameter 'duration' must be an integer from 0 to 655350, got -1
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"parameters must be a mapping of names to values, got {params!r}")
    checked: dict[str, Any] = {}
    for key, value in params.items():
        name = key.replace("-", "_") if isinstance(key, str) else key
        if name not in ALLOWED:
            raise ValueError(f"unknown parameter {key!r}; allowed: {', '.join(ALLOWED)}")
        if name in checked:
            raise ValueError(f"parameter {name!r} is given twice")
        if value is None and name not in ("url", "frames_dir", "storage_options"):
            continue  # null: the default, as if the key were absent
        try:
            checked[name] = ALLOWED[name](value)
        except ValueError as e:
            raise ValueError(mask(f"parameter {name!r} {_reason(str(e))}")) from None
    return checked


def _reason(message: str) -> str:
    """A check's message as the tail of "parameter 'x' ...": its own leading name dropped.

    >>> _reason("duration must be positive, got '0s'"), _reason("must be true or false, got 1")
    ("must be positive, got '0s'", 'must be true or false, got 1')
    """
    head, sep, tail = message.partition(" must ")
    return f"must {tail}" if sep and len(head.split()) <= 2 else message


def parse_params(text: str, suffix: str = "") -> Any:
    """Parse a parameter file's *text*: JSON for a ``.json`` suffix, else YAML (JSON is YAML too).

    >>> parse_params('{"duration": 40}', ".json")
    {'duration': 40}
    >>> parse_params("duration: 40\\ncron: 0 2 * * *\\n")
    {'duration': 40, 'cron': '0 2 * * *'}
    """
    import yaml

    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"is not valid JSON: {e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"is not valid YAML or JSON: {' '.join(str(e).split())}") from None


def load_params(path: str, storage_options: dict | None = None) -> dict[str, Any]:
    """Read and check the parameter file *path* (YAML, or JSON by its ``.json`` suffix or its content).

    Parameters
    ----------
    path : str
        Any fsspec path: ``run.yaml``, ``s3://bucket/jobs/nightly.json``.
    storage_options : dict, optional
        fsspec options for reading *path* (not the run's ``storage_options``).

    Returns
    -------
    dict
        As :func:`check_params` returns it.

    Raises
    ------
    OSError
        *path* cannot be read (``FileNotFoundError`` when it does not exist).
    ValueError
        Not YAML/JSON, not a mapping, an unknown key or a bad value; the message
        starts with *path*.

    Examples
    --------
    >>> from daskgif import storage
    >>> with storage.atomic_write("memory://daskgif-doctest/run.yaml") as f:
    ...     _ = f.write(b"duration: 40\\nstorage_options: {anon: true}\\ndelimiter: '\\\\n\\\\n'\\n")
    >>> load_params("memory://daskgif-doctest/run.yaml")
    {'duration': 40, 'storage_options': {'anon': True}, 'delimiter': b'\\n\\n'}
    """
    from daskgif import storage

    with storage.open_input(path, storage_options) as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
        found = parse_params(text, os.path.splitext(path)[1].lower())
        if not isinstance(found, Mapping):
            raise ValueError(f"must hold a mapping of parameter names to values, got {found!r}"[:200])
        return check_params(found)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
