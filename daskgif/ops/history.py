"""Run history: one JSON line per run (:meth:`~daskgif.ops.schedule.ScheduledRun.to_record`), in any fsspec
file, and a table of the last runs.

Object stores cannot append: there the file is written again whole, atomically, and two schedules writing
to the same history at the same moment may lose a line.
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

    Lines that are no run record (cut short by a crash, not JSON, not UTF-8) are skipped; one warning says
    how many.  A file of lines none of which is a record raises ``ValueError``; one that cannot be read, or
    is no regular file (a fifo would block), ``OSError``.

    Examples
    --------
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
    check_regular(path)
    records, skipped, first_skipped = [], 0, 0
    with storage.open_input(path, storage_options) as f:
        for number, line in enumerate(lines_of(f), 1):
            if line is not None and not line.strip():
                continue
            record = parse_record(line)
            if record is None:
                skipped, first_skipped = skipped + 1, first_skipped or number
            else:
                records.append(record)
    if skipped and not records:
        raise ValueError(f"{mask(path)} is not a history file: none of its {skipped} line{'s' * (skipped > 1)} "
                         "is a run record")
    if skipped:
        logger.warning("Skipped %d line(s) of %s that are no run record (the first: line %d)", skipped, mask(path),
                       first_skipped)
    return records if last is None else records[len(records) - last:] if last else []


def check_regular(path: str) -> None:
    """Refuse a local *path* that is no regular file (a fifo, a device, a folder), naming what it is."""
    local = storage.local_path(path)
    if local is not None:
        mode = os.stat(local).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"is {storage.file_kind(mode)}, not a history file", path)


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
