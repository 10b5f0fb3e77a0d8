"""The lease on the files a run uses: ``<data_file>.lock``, ``<out>.lock``, ``<frames_dir>.lock``.

A run's tasks run wherever Dask puts them, so the lock is *leased* to a run until a time its file says:
each step takes or renews it (:meth:`Lease.kept`), the last or a failing one releases it, a dead run holds
it at most *seconds* more.  A second run never waits (two on ``sync`` would block): it fails with ``LockHeld``.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from fsspec.core import url_to_fs

from daskgif.errors import LockHeld
from daskgif.storage.files import guard, hold, let_go, named, read_small, remove_file, write_bytes
from daskgif.storage.paths import check_target, fs_options, host_name, local_path, pid_alive

__all__ = ["Lease"]

logger = logging.getLogger(__name__)


class Lease:
    """The lease of run *owner* on ``<file>.lock`` for each of *guarded*, *seconds* at a time.

    Taken in order, all or none: :class:`LockHeld` names another live run holding one.
    It pickles, so every task of a run can take it.

    >>> import fsspec
    >>> exists = fsspec.filesystem("memory").exists
    >>> lease = Lease("memory://daskgif-doctest/l.img", owner="run-1", seconds=5)
    >>> lease.acquire()["owner"], exists("/daskgif-doctest/l.img.lock")
    ('run-1', True)
    >>> Lease("memory://daskgif-doctest/l.img", owner="run-2", seconds=5).acquire()
    Traceback (most recent call last):
    ...
    daskgif.errors.LockHeld: memory://daskgif-doctest/l.img.lock is held by run run-1 (host ...)
    >>> lease.release(); exists("/daskgif-doctest/l.img.lock")
    False
    """

    def __init__(self, guarded: str | Sequence[str], storage_options: dict | None = None, *, owner: str,
                 seconds: float):
        self.paths = tuple(f"{path}.lock" for path in ([guarded] if isinstance(guarded, str) else guarded))
        self.storage_options, self.owner, self.seconds = storage_options, owner, seconds

    def __repr__(self) -> str:
        return f"Lease({', '.join(map(repr, self.paths))}, owner={self.owner!r})"

    def _record(self) -> dict[str, Any]:
        now = time.time()
        return {"host": host_name(), "pid": os.getpid(), "owner": self.owner, "expires": now + self.seconds,
                "renewed_at": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds"),
                "token": uuid.uuid4().hex}

    def acquire(self) -> dict[str, Any]:
        """Take every lease, or renew those this run holds; raise :class:`LockHeld` if another live run holds one."""
        taken: list[str] = []
        try:
            for path in self.paths:
                try:
                    created, mine = self._take(path)
                except OSError as e:  # a folder not writable: say it is the lock that cannot be written
                    raise named(e, path, f" (taking the lock {path}, which guards {path[:-5]})") from e
                if created:
                    taken.append(path)
        except BaseException:
            for path in taken:
                self._release(path)
            raise
        return mine

    def _take(self, path: str) -> tuple[bool, dict[str, Any]]:
        for _ in range(3):  # a stale lock broken, then a race lost to a third run: give up naming it
            mine = self._record()
            with guard(path):
                created = _create_exclusive(path, json.dumps(mine).encode(), self.storage_options)
                if created:
                    hold(self._key(path), functools.partial(self._release, path))
            if created:
                return True, mine
            holder = _read_lock(path, self.storage_options)
            if holder is None:
                continue  # released meanwhile
            if holder.get("owner") == self.owner:
                expires = holder.get("expires")
                if isinstance(expires, (int, float)) and expires - time.time() > self.seconds * 2 / 3:
                    # renewed moments ago (by the run's previous step): reading it is enough
                    hold(self._key(path), functools.partial(self._release, path))
                    return False, holder
                try:
                    return False, self._renew(path)
                except LeaseEnded:
                    continue  # released meanwhile: take it anew
            stale = _stale_lock(holder)
            if stale is None:
                raise LockHeld(path, holder, self.seconds)
            logger.warning("Breaking the stale lock %s of run %s (host %s, pid %s): %s", path,
                           holder.get("owner"), holder.get("host"), holder.get("pid"), stale)
            if _read_lock(path, self.storage_options) == holder:  # not taken over meanwhile
                remove_file(path, self.storage_options)
        raise LockHeld(path, _read_lock(path, self.storage_options) or {}, self.seconds)

    def renew(self) -> dict[str, Any]:
        """Extend every lease by *seconds*; ``LockHeld`` if another run took one, ``LeaseEnded`` if one is gone."""
        for path in self.paths:
            mine = self._renew(path)
        return mine

    def _renew(self, path: str) -> dict[str, Any]:
        holder = _read_lock(path, self.storage_options)
        if holder is None:  # the run ended (or failed) meanwhile: a renewal never brings its lease back
            raise LeaseEnded(path)
        if holder.get("owner") != self.owner:
            raise LockHeld(path, holder, self.seconds)
        mine = self._record()
        with guard(path):
            write_bytes(path, json.dumps(mine).encode(), self.storage_options)
            hold(self._key(path), functools.partial(self._release, path))
        return mine

    def release(self) -> None:
        """Remove the lock files this run holds."""
        for path in self.paths:
            self._release(path)

    def _release(self, path: str) -> None:
        holder = _read_lock(path, self.storage_options)
        if holder is not None and holder.get("owner") == self.owner:
            remove_file(path, self.storage_options)
        let_go(self._key(path))

    def _key(self, path: str) -> str:
        return f"{path} (run {self.owner})"

    @contextlib.contextmanager
    def kept(self) -> Iterator[dict[str, Any]]:
        """Hold the leases for the block, renewing them every third of *seconds*; they stay held after the block."""
        held = self.acquire()
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.seconds / 3):
                try:
                    self.renew()
                except LeaseEnded:
                    return
                except (OSError, LockHeld) as e:
                    logger.warning("Could not renew %s: %s", self, e)
                    return

        thread = threading.Thread(target=renew, name=f"daskgif-lease-{self.owner}", daemon=True)
        thread.start()
        try:
            yield held
        finally:
            stop.set()
            thread.join()


class LeaseEnded(Exception):
    """A lease to renew is gone: its run ended, or a failed step ended it."""


def _create_exclusive(path: str, content: bytes, storage_options: dict | None) -> bool:
    """Create *path* holding *content* unless it exists; whether it was created."""
    local = local_path(path)
    if local is not None:
        check_target(local)  # a fifo, a device or a folder where the lock goes is named, never waited on
        if directory := os.path.dirname(local):
            os.makedirs(directory, exist_ok=True)
        # Written whole under another name, then linked into place: link() fails if the name exists,
        # and a reader never sees a lock file without its holder (an empty one would look stale).
        temporary = f"{local}.{uuid.uuid4().hex}.new"
        try:
            with open(temporary, "xb") as f:
                f.write(content)
            os.link(temporary, local)
        except FileExistsError:
            return False
        except OSError as e:
            if e.filename is not None:
                raise
            raise named(e, path) from e  # a write that found the disk full: name the lock file
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
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


def _read_lock(path: str, storage_options: dict | None) -> dict | None:
    """The holder written in lock file *path*, ``None`` when there is none, ``{}`` when it cannot be parsed."""
    try:
        holder = json.loads(read_small(path, storage_options))
    except FileNotFoundError:
        return None
    except ValueError:
        holder = None
    return holder if isinstance(holder, dict) else {}


def _stale_lock(holder: dict, now: float | None = None) -> str | None:
    """Why the lock of *holder* is stale, or ``None`` while it is live.

    >>> _stale_lock({"host": host_name(), "pid": os.getpid(), "expires": time.time() + 5}) is None
    True
    >>> _stale_lock({"host": "elsewhere", "pid": 1, "expires": 90.0}, now=100.0)
    'its lease ended 10 s ago'
    """
    now = time.time() if now is None else now
    pid, expires = holder.get("pid"), holder.get("expires")
    if holder.get("host") == host_name() and isinstance(pid, int) and not pid_alive(pid):
        return f"its process (pid {pid}) is gone"
    if not isinstance(expires, (int, float)) or isinstance(expires, bool):
        return "it says nothing of its holder"
    if expires < now:
        return f"its lease ended {now - expires:.0f} s ago"
    return None
