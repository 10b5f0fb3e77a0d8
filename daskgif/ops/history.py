"""Run history: one JSON line per run, in any fsspec file, and a table of the last runs.

A record holds the run's ``start`` and ``end`` (local ISO times), ``duration``,
``ok``, ``out``, ``frames``, ``states`` (counts per task and state), ``message``
(the cause of a failure) and ``parameters`` (never the storage options).

Local files are appended to. Object stores cannot append, so there the file is
read and written again whole, atomically; two schedules writing to the same
object-store history at the same moment may lose a line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from daskgif import storage
from daskgif.redact import json_default, mask, scrub

__all__ = ["append_run", "read_history", "format_history"]

logger = logging.getLogger(__name__)

def append_run(path: str, record: Mapping[str, Any], storage_options: dict | None = None) -> None:
    """Append *record* as one JSON line to the history file *path*, creating it if needed.

    URL credentials anywhere in *record* are masked (:func:`daskgif.redact.scrub`).
    """
    line = (json.dumps(scrub(record), default=json_default, separators=(", ", ": ")) + "\n").encode()
    storage.append_bytes(path, line, storage_options)


def read_history(path: str, last: int | None = None, storage_options: dict | None = None) -> list[dict[str, Any]]:
    """Return the records of the history file *path*, oldest first; only the *last* ones if given.

    A line that is not a JSON object (e.g. cut short by a crash) is logged and skipped.
    """
    if last is not None and (not isinstance(last, int) or last < 0):
        raise ValueError(f"last must be a non-negative integer, got {last!r}")
    with storage.open_input(path, storage_options) as f:
        lines = f.read().decode("utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            logger.warning("Skipping line %d of %s: not a JSON object", number, mask(path))
            continue
        records.append(record)
    return records if last is None else records[len(records) - last:] if last else []


def format_history(records: Iterable[Mapping[str, Any]]) -> str:
    """Return the runs as an aligned table: start, duration, ok, frames, out, message.

    URL credentials are masked, also in lines written before daskgif masked them.

    >>> print(format_history([
    ...     {"start": "2024-01-02T02:00:00.000+00:00", "duration": 3.21, "ok": True, "frames": 27,
    ...      "out": "clip.gif", "message": ""},
    ...     {"start": "2024-01-03T02:00:00.000+00:00", "duration": 0.5, "ok": False, "frames": None,
    ...      "out": "clip.gif", "message": "Run FAILED: task 'fetch' failed"}]))
    start                duration  ok      frames  out       message
    2024-01-02 02:00:00     3.2 s  yes         27  clip.gif
    2024-01-03 02:00:00     0.5 s  FAILED       -  clip.gif  Run FAILED: task 'fetch' failed
    """
    header = ("start", "duration", "ok", "frames", "out", "message")
    rows = [header] + [row(r) for r in records]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {1, 3}
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def row(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The table cells of one record."""
    start = record.get("start")
    try:
        start = datetime.fromisoformat(start).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        start = str(start or "-")
    duration = record.get("duration")
    ok = "cancelled" if record.get("cancelled") else "yes" if record.get("ok") else "FAILED"
    frames = record.get("frames")
    message = mask(" ".join(str(record.get("message") or "").split()))
    return (start, "-" if duration is None else f"{duration:.1f} s", ok, "-" if frames is None else str(frames),
            mask(str(record.get("out") or "-")), message)
