"""Run history: one JSON line per run in any fsspec file, and a table of the last runs.

Object stores cannot append: there the file is written again whole, so two schedules writing
to one history at the same moment may lose a line.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import IO, Any

from daskgif import storage
from daskgif.redact import json_default, mask, scrub

__all__ = ["append_run", "read_history", "format_history"]

logger = logging.getLogger(__name__)


def append_run(path: str, record: Mapping[str, Any], storage_options: dict | None = None) -> None:
    """Append *record* as one JSON line, secrets masked, to the history file *path*, creating it if needed."""
    line = (json.dumps(scrub(record), default=json_default, separators=(", ", ": ")) + "\n").encode()
    storage.append_bytes(path, line, storage_options)


#: The keys every run record has (see :meth:`daskgif.ops.schedule.ScheduledRun.to_record`).
RECORD_KEYS = ("start", "ok")
#: The longest line read as a record, in bytes: a record takes about a kilobyte.
MAX_LINE = 2**20


def read_history(path: str, last: int | None = None, storage_options: dict | None = None) -> list[dict[str, Any]]:
    """Return the records of the history file *path*, oldest first; only the *last* ones if given.

    Lines that are no run record (cut short by a crash, not JSON) are skipped with one warning; a file
    without any raises ``ValueError``, one that cannot be read or is no regular file ``OSError``.

    >>> append_run("memory://daskgif-doctest/history.jsonl", {"start": "2024-01-02T02:00:00", "ok": True})
    >>> read_history("memory://daskgif-doctest/history.jsonl")
    [{'start': '2024-01-02T02:00:00', 'ok': True}]
    >>> storage.append_bytes("memory://daskgif-doctest/image.gif", b"GIF89a\\x01\\x00\\n\\xff\\xfe")
    >>> read_history("memory://daskgif-doctest/image.gif")
    Traceback (most recent call last):
    ...
    ValueError: memory://daskgif-doctest/image.gif is not a history file: none of its 2 lines is a run record
    """
    if last is not None and (not isinstance(last, int) or last < 0):
        raise ValueError(f"last must be a non-negative integer, got {last!r}")
    local = storage.local_path(path)
    if local is not None and not stat.S_ISREG(mode := os.stat(local).st_mode):  # a fifo would block
        raise OSError(errno.EINVAL, f"is {storage.file_kind(mode)}, not a history file", path)
    with storage.open_input(path, storage_options) as f:
        found = [(n, parse_record(line)) for n, line in enumerate(lines_of(f), 1) if line is None or line.strip()]
    records, skipped = [r for _, r in found if r is not None], [n for n, r in found if r is None]
    if skipped and not records:
        raise ValueError(f"{mask(path)} is not a history file: none of its {len(skipped)} "
                         f"line{'s' * (len(skipped) > 1)} is a run record")
    if skipped:
        logger.warning("Skipped %d line(s) of %s that are no run record (the first: line %d)", len(skipped),
                       mask(path), skipped[0])
    return records if last is None else records[len(records) - last:] if last else []


def lines_of(f: IO[bytes], limit: int = MAX_LINE) -> Iterator[bytes | None]:
    """The lines of the binary file *f*, without their ends; ``None`` for one over *limit* bytes, never held whole.

    >>> import io
    >>> list(lines_of(io.BytesIO(b"a\\n" + b"b" * 10 + b"\\nc"), limit=5))
    [b'a', None, b'c']
    """
    pending, too_long = b"", False
    while chunk := f.read(2**16):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield None if too_long or len(line) > limit else line
            too_long = False
        if len(pending) > limit:
            pending, too_long = b"", True
    if pending or too_long:
        yield None if too_long else pending


def parse_record(line: bytes | None) -> dict[str, Any] | None:
    """The run record on *line*, or ``None`` if it holds none (not UTF-8 JSON, no object with :data:`RECORD_KEYS`).

    >>> parse_record(b'{"start": "2024-01-02T02:00:00", "ok": true}'), parse_record(b"\\xff"), parse_record(b"[1]")
    ({'start': '2024-01-02T02:00:00', 'ok': True}, None, None)
    """
    if line is None:
        return None
    try:
        record = json.loads(line)  # UnicodeDecodeError is a ValueError
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) and all(key in record for key in RECORD_KEYS) else None


def format_history(records: Iterable[Mapping[str, Any]]) -> str:
    """Return the runs as an aligned table, URL credentials masked (lines written before masking have them).

    >>> print(format_history([
    ...     {"start": "2024-01-02T02:00:00.000+00:00", "duration": 3.21, "ok": True, "frames": 27,
    ...      "out": "clip.gif", "message": ""},
    ...     {"start": "2024-01-03T02:00:00.000+00:00", "duration": 0.5, "ok": False, "frames": None,
    ...      "out": "clip.gif", "message": "Run FAILED: task 'fetch' failed"}]))
    start                duration  ok      frames  out       message
    2024-01-02 02:00:00     3.2 s  yes         27  clip.gif
    2024-01-03 02:00:00     0.5 s  FAILED       -  clip.gif  Run FAILED: task 'fetch' failed
    """
    rows = [("start", "duration", "ok", "frames", "out", "message"), *map(row, records)]
    widths = [max(map(len, column)) for column in zip(*rows)]
    return "\n".join("  ".join(cell.rjust(w) if i in (1, 3) else cell.ljust(w)  # duration and frames to the right
                               for i, (cell, w) in enumerate(zip(r, widths))).rstrip() for r in rows)


def row(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The table cells of one record."""
    start = record.get("start")
    try:
        start = datetime.fromisoformat(start).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        start = str(start or "-")
    duration, frames = record.get("duration"), record.get("frames")
    ok = "cancelled" if record.get("cancelled") else "yes" if record.get("ok") else "FAILED"
    return (start, "-" if duration is None else f"{duration:.1f} s", ok, "-" if frames is None else str(frames),
            mask(str(record.get("out") or "-")), mask(" ".join(str(record.get("message") or "").split())))
