"""Cancelling a run: its tasks stop before their next frame and before the output is renamed into place.
A run is cancelled in this process and, through a file in the temporary folder, in the child processes of
the ``processes`` scheduler; on a worker, a task the scheduler cancelled counts too; and in its own thread, an
attempt given up on after its timeout (``runtime.given_up``), so that a late ``combine`` stops before it would
rename an output into place for a run that has already failed.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import threading
from pathlib import Path

from daskgif.core.runtime import given_up, on_worker
from daskgif.errors import Cancelled, is_transient

__all__ = ["cancel", "cancelled", "check_cancelled", "stopped", "retried", "forget"]

_cancelled: set[str] = set()


def _mark(token: str) -> Path:
    """The file that tells the child processes of the ``processes`` scheduler that run *token* was cancelled."""
    return Path(tempfile.gettempdir(), f"daskgif-cancelled-{token}")


def cancel(token: str) -> None:
    """Ask the batches of run *token* in this process, and its child processes, to stop before their next item."""
    _cancelled.add(token)
    _mark(token).touch()


def forget(token: str) -> None:
    """Drop the cancellation mark of run *token*, once it has ended."""
    _cancelled.discard(token)
    _mark(token).unlink(missing_ok=True)


def cancelled(token: str) -> bool:
    """Whether run *token* was cancelled here, or (on a worker) the running task was cancelled by the scheduler."""
    if token in _cancelled:
        return True
    if not on_worker():  # a worker is told by cancel() itself, never by the file: no stat per frame there
        return multiprocessing.parent_process() is not None and _mark(token).exists()
    from distributed import get_worker

    worker = get_worker()
    key = worker.active_threads.get(threading.get_ident())  # None in a helper thread (a timed attempt)
    task = worker.state.tasks.get(key)
    return key is not None and (task is None or task.state in ("cancelled", "released", "forgotten"))


def check_cancelled(token: str) -> None:
    """Raise :class:`~daskgif.errors.Cancelled` if run *token* was cancelled, or this attempt timed out."""
    if given_up():
        raise Cancelled(f"run {token}: an attempt given up on after its timeout stops here")
    if cancelled(token):
        raise Cancelled(f"run {token} was cancelled")


def stopped(token: str) -> bool:
    """Whether the work of run *token* in this thread should stop: the run was cancelled, or this attempt was
    given up on after its timeout (what :func:`check_cancelled` raises for, as a question)."""
    return given_up() or cancelled(token)


def retried(token: str, error: BaseException) -> bool:
    """Whether a failed attempt of run *token* is retried: its error is transient; a run cancelled meanwhile
    raises :class:`~daskgif.errors.Cancelled` (it was stopped, not failed).

    >>> retried("r-doc", ConnectionError("reset")), retried("r-doc", ValueError("bad"))
    (True, False)
    """
    if cancelled(token):
        raise Cancelled(f"run {token} was cancelled") from error
    return is_transient(error)
