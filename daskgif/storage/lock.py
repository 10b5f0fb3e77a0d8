"""The lock next to a data file: two runs never fetch into, or read from, one data file at once."""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fsspec.core import url_to_fs

from daskgif.errors import LockTimeout
from daskgif.storage.files import open_input, remove_file
from daskgif.storage.paths import fs_options, host_name, local_path, pid_alive

__all__ = [
    "lock",
]

logger = logging.getLogger(__name__)


@contextmanager
def lock(
    data_file: str,
    storage_options: dict | None = None,
    *,
    owner: str,
    timeout: float,
    max_age: float | None = 86400,
    poll: float = 0.1,
) -> Iterator[dict[str, Any]]:
    """Hold ``<data_file>.lock`` for the block, so that two runs never fetch into one data file at once.

    The lock file is created exclusively (locally ``O_CREAT | O_EXCL``; elsewhere
    fsspec's ``"xb"`` mode, and where a filesystem lacks it, a check-then-write
    that is only a best effort) and holds the holder's host, pid, run id and start.
    It is removed on leaving the block, if it is still this holder's.

    While another live run holds it, this waits up to *timeout* seconds.  A stale
    lock is broken, with a warning: one written on this host by a process that is
    gone, or one older than *max_age* seconds.

    Parameters
    ----------
    data_file : str
        The file the lock guards (any fsspec path).
    storage_options : dict, optional
        fsspec options.
    owner : str
        The run id of the holder, shown to the runs that wait.
    timeout : float
        Seconds to wait for another run's lock (``daskgif.lock-timeout``).
    max_age : float, optional
        Seconds after which any lock counts as stale, whoever holds it; ``None``: never.
        Not a setting: a pipeline run keeps the default, a day.
    poll : float, optional
        Seconds between two looks at a held lock.

    Yields
    ------
    dict
        What the lock file holds.

    Raises
    ------
    LockTimeout
        Naming the lock file and the holder, when it was held for all of *timeout*.

    Examples
    --------
    >>> from daskgif.storage import exists
    >>> with lock("memory://daskgif-doctest/l.img", owner="run-1", timeout=1) as held:
    ...     held["owner"], exists("memory://daskgif-doctest/l.img.lock")
    ('run-1', True)
    >>> exists("memory://daskgif-doctest/l.img.lock")
    False
    """
    path = data_file + ".lock"
    now = time.time()
    mine = {"host": host_name(), "pid": os.getpid(), "owner": owner, "started": now,
            "started_at": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(),
            "token": uuid.uuid4().hex}
    content = json.dumps(mine).encode()
    give_up = time.monotonic() + timeout
    while not _create_exclusive(path, content, storage_options):
        holder, age = _read_lock(path, storage_options)
        if holder is None:
            continue  # released meanwhile
        stale = _stale_lock(holder, age, max_age)
        if stale:
            logger.warning("Breaking the stale lock %s of run %s (host %s, pid %s): %s", path,
                           holder.get("owner"), holder.get("host"), holder.get("pid"), stale)
            if _read_lock(path, storage_options)[0] == holder:  # not taken over meanwhile
                remove_file(path, storage_options)
            if _create_exclusive(path, content, storage_options):
                break
            holder, age = _read_lock(path, storage_options)  # another run was quicker
            if holder is None:
                continue
        if time.monotonic() >= give_up:
            raise LockTimeout(path, holder or {"owner": "unknown (unreadable lock file)"}, timeout)
        time.sleep(max(0.0, min(poll, give_up - time.monotonic())))
    try:
        yield mine
    finally:
        if (_read_lock(path, storage_options)[0] or {}).get("token") == mine["token"]:
            remove_file(path, storage_options)
        else:
            logger.warning("The lock %s was taken from run %s while it held it", path, owner)


def _create_exclusive(path: str, content: bytes, storage_options: dict | None) -> bool:
    """Create *path* holding *content* unless it exists; whether it was created."""
    local = local_path(path)
    if local is not None:
        directory = os.path.dirname(local)
        if directory:
            os.makedirs(directory, exist_ok=True)
        try:
            fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        return True
    fs, p = url_to_fs(path, **fs_options(path, storage_options))
    try:
        with fs.open(p, "xb") as f:
            f.write(content)
        return True
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError, TypeError):
        pass  # no exclusive create here: a best effort, racy between the check and the write
    if fs.exists(p):
        return False
    fs.pipe_file(p, content)
    return True


def _read_lock(path: str, storage_options: dict | None) -> tuple[dict | None, float | None]:
    """The holder written in lock file *path* and the lock's age in seconds; ``(None, None)`` when there is none.

    A lock file that cannot be parsed (being written) gives ``({}, age)``.
    """
    try:
        with open_input(path, storage_options) as f:
            data = f.read()
    except FileNotFoundError:
        return None, None
    try:
        holder = json.loads(data)
    except ValueError:
        holder = None
    if isinstance(holder, dict) and isinstance(holder.get("started"), (int, float)):
        return holder, time.time() - holder["started"]
    try:  # unreadable: its age is its modification time's
        fs, p = url_to_fs(path, **fs_options(path, storage_options))
        modified = fs.modified(p).timestamp()
    except (OSError, NotImplementedError):
        modified = time.time()
    return {}, time.time() - modified


def _stale_lock(holder: dict | None, age: float | None, max_age: float | None) -> str | None:
    """Why the lock of *holder*, *age* seconds old, is stale, or ``None`` while it is live.

    >>> _stale_lock({"host": host_name(), "pid": os.getpid()}, 5.0, 60) is None
    True
    >>> _stale_lock({"host": "elsewhere", "pid": 1}, 90.0, 60)
    'older than max_age=60 s'
    """
    holder = holder or {}
    pid = holder.get("pid")
    if holder.get("host") == host_name() and isinstance(pid, int) and not pid_alive(pid):
        return f"its process (pid {pid}) is gone"
    if max_age is not None and age is not None and age > max_age:
        return f"older than max_age={max_age} s"
    return None
