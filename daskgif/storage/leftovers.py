"""What killed writers and earlier runs leave behind, and its removal: temporary files of writes that never
finished (:func:`remove_stale_parts`, :func:`remove_dead_uploads`) and the frame files of an earlier run that
are not among this run's (:func:`remove_stale_frames`).  A live writer's file is never touched.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable

from fsspec.core import url_to_fs

from daskgif.storage.paths import (FRAME_NAME, UPLOAD_NAME, frame_name, fs_options, host_name, join_path, local_path,
                                   part_owner, pid_alive)

__all__ = ["remove_stale_parts", "remove_dead_uploads", "remove_stale_frames"]

logger = logging.getLogger(__name__)


def remove_stale_parts(directory: str, prefix: str | None = None, *, max_age: float | None = 86400) -> list[str]:
    """Remove the temporary files that killed writers left in local *directory* for names starting with *prefix*.

    One of :func:`atomic_write` is stale when its writer on this host is gone or, from
    any host, when it was not written for *max_age* seconds (``None``: only dead
    writers'); a live writer's never is, nor one that cannot be removed (logged).  Other
    URLs hold no temporary files: uploads are written in the local temporary folder
    first, under :data:`UPLOAD_NAME` (see :func:`remove_dead_uploads`).

    >>> remove_stale_parts("/no/such/folder")
    []
    """
    local = local_path(directory)
    if local is None:
        return remove_dead_uploads()
    try:
        names = [] if local is None else os.listdir(local or ".")
    except FileNotFoundError:
        return []
    now, host, removed = time.time(), host_name(), []
    for part in names:
        if not (part.startswith(".") and part.endswith(".part")) or (prefix and not part.startswith("." + prefix)):
            continue
        path = os.path.join(local, part)
        owner = part_owner(part, host)
        mine = owner is not None and owner[1] == os.getpid()
        try:
            if owner is not None and not mine and not pid_alive(owner[1]):
                why = f"its writer, pid {owner[1]} on {host}, is gone"
            else:
                age = now - os.stat(path).st_mtime
                if max_age is None or age < max_age or mine:
                    continue
                why = f"not written for {age:.0f} s (max_age={max_age})"
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as e:  # another user's, a read-only folder: left there, never a reason to fail a run
            logger.warning("Cannot remove the stale temporary file %s: %s", path, e)
            continue
        logger.info("Removed stale temporary file %s: %s", path, why)
        removed.append(path)
    return removed


_swept: list[float] = []  # when this process last looked for dead uploads
_sweeping = threading.Lock()


def remove_dead_uploads(every: float = 600) -> list[str]:
    """Remove from the local temporary folder the uploads (:data:`UPLOAD_NAME`) of this user whose writer on
    this host is gone; at most once every *every* seconds in a process (the folder may be large and shared).

    >>> isinstance(remove_dead_uploads(every=0), list)
    True
    """
    now = time.monotonic()
    with _sweeping:
        if _swept and now - _swept[0] < every:
            return []
        _swept[:] = [now]
    folder, host, removed = tempfile.gettempdir(), host_name(), []
    try:
        names = [name for name in os.listdir(folder) if name.startswith(f".{UPLOAD_NAME}.") and name.endswith(".part")]
    except OSError:
        return []
    for part in names:
        owner, path = part_owner(part, host), os.path.join(folder, part)
        if owner is None or owner[1] == os.getpid() or pid_alive(owner[1]):
            continue
        try:
            if os.stat(path).st_uid != os.getuid():  # another user's: theirs to remove
                continue
            os.unlink(path)
        except OSError:
            continue
        logger.info("Removed the upload of a writer that is gone (pid %d on %s): %s", owner[1], host, path)
        removed.append(path)
    return removed


def remove_stale_frames(frames_dir: str, count: int, storage_options: dict | None = None, *,
                        names: Iterable[str]) -> list[str]:
    """Remove the frame files (``frame_<digits>.gif``) of an earlier run that are not among this run's *count*.

    *names*: the files of *frames_dir*, as :func:`list_sizes` lists them.

    >>> from daskgif.storage.files import list_sizes, write_bytes
    >>> write_bytes("memory://daskgif-doctest/fr/frame_07.gif", b"GIF89a")
    True
    >>> remove_stale_frames("memory://daskgif-doctest/fr", 3, names=list_sizes("memory://daskgif-doctest/fr"))
    ['memory://daskgif-doctest/fr/frame_07.gif']
    """
    width = len(frame_name(0, count)) if count else 0
    fs, _ = url_to_fs(frames_dir, **fs_options(frames_dir, storage_options))
    stale = []
    for base in (name.rstrip("/").rsplit("/", 1)[-1] for name in names):
        match = FRAME_NAME.fullmatch(base)
        if match and (len(base) != width or int(match.group(1)) >= count):
            stale.append(join_path(frames_dir, base))
            fs.rm_file(fs._strip_protocol(stale[-1]))
    if stale:
        logger.info("Removed %d frame file(s) of an earlier run from %s", len(stale), frames_dir)
    return stale
