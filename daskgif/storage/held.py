"""What this process holds on disk that an abort must not leave behind: the files it is writing, its leases.

A run that is stopped ends its own writes (each removes its temporary file) and
releases its lease.  An *abort* (a second Ctrl-C or SIGTERM) does not wait for
them: the process exits at once, and threads in the middle of a write never get
to clean up.  So every temporary file and lease is registered here while it
exists, and :func:`abort_writes` removes them all before the process exits.

Local files are made under :func:`guard`, which holds the same lock as
:func:`abort_writes` and refuses once it ran: a file is either made and
registered before the abort (which removes it) or never made.  On other file
systems (object stores) nothing is made under a lock, as that would hold every
thread of the process during a request; a lease taken there while the abort runs
may stay until it ends (``daskgif.lock-timeout``).

Examples
--------
>>> with guard("example.part"):
...     hold("example.part", lambda: None)  # made, then registered as one step
>>> let_go("example.part")
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["guard", "hold", "let_go", "abort_writes"]

logger = logging.getLogger(__name__)

_lock = threading.RLock()  # re-entrant: an undo (a lease's release) runs under it
_undo: dict[str, Callable[[], None]] = {}
_aborted = False


@contextmanager
def guard(path: str, local: bool = True) -> Iterator[None]:
    """Make *path* in the block, under the lock of :func:`abort_writes`; ``ECANCELED`` once an abort ran.

    With ``local=False`` (an object store) the block runs after the check, outside the lock.
    """
    with _lock:
        if _aborted:
            raise OSError(errno.ECANCELED, "not written: this process is aborting", path)
        if local:
            yield
            return
    yield


def hold(key: str, undo: Callable[[], None]) -> None:
    """Register what this process made under *key* and how an abort undoes it (removes a file, ends a lease)."""
    with _lock:
        _undo[key] = undo


def let_go(key: str) -> None:
    """*key* is done with (renamed into place, removed, released): an abort leaves it alone."""
    with _lock:
        _undo.pop(key, None)


def abort_writes() -> list[str]:
    """Undo everything registered, in the order it was made, and make nothing more; return the keys undone.

    For the moment before a process exits without waiting for its threads.  An
    undo that fails is logged and the others still run.
    """
    global _aborted
    with _lock:
        _aborted = True
        undone = list(_undo)
        for key, undo in list(_undo.items()):
            try:
                undo()
            except Exception as e:  # noqa: BLE001 - the others must still go
                logger.warning("Could not remove %s while aborting: %s", key, e)
        _undo.clear()
    return undone
