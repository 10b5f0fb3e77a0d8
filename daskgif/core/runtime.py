"""Where code runs, and how it waits there: one answer to each question, for all of daskgif.

Python cannot kill a thread: a call in a thread (:func:`in_thread`) that its
caller stops waiting for is abandoned, runs to its end, and its result is dropped.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import inspect
import multiprocessing
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dask

__all__ = ["LOCAL_SCHEDULERS", "on_worker", "find_client", "current_scheduler", "check_main_guard", "released",
           "in_thread", "wait_done"]

#: The names of Dask's local schedulers (``dask.base.named_schedulers``); the first three are one thread.
LOCAL_SCHEDULERS = ("sync", "synchronous", "single-threaded", "threads", "threading", "processes", "multiprocessing")


def on_worker() -> bool:
    """Whether this thread runs a task on a ``distributed`` worker."""
    if "distributed" not in sys.modules:
        return False
    from distributed import (
        get_worker,  # waits for an import under way in another thread
    )

    try:
        return get_worker() is not None
    except ValueError:
        return False


def find_client(scheduler: Any = None) -> Any:
    """The ``distributed.Client`` that ``compute(scheduler=scheduler)`` goes to, or ``None`` for a local one.

    >>> find_client("sync") is None
    True
    """
    if hasattr(scheduler, "subscribe_topic"):
        return scheduler
    if scheduler is not None or "distributed" not in sys.modules \
            or dask.config.get("scheduler", None) not in (None, "dask.distributed", "distributed"):
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def current_scheduler() -> tuple[str, int]:
    """The scheduler running the calling task, and its threads: where the tasks it launches should run.

    ``"distributed"`` on a worker; ``"sync"`` in a child of the ``processes`` scheduler;
    else ``dask.config`` ``scheduler`` and ``num_workers`` where set; else ``"threads"``
    in a pool thread of the threaded scheduler (its size), or ``"sync"`` (the caller's thread).

    >>> current_scheduler()
    ('sync', 1)
    """
    if on_worker():
        return "distributed", 0
    name, threads = dask.config.get("scheduler", None), dask.config.get("num_workers", None)
    if multiprocessing.parent_process() is not None or name in LOCAL_SCHEDULERS[:3]:
        return "sync", 1
    if name in LOCAL_SCHEDULERS:
        from dask.system import CPU_COUNT

        return name, threads or CPU_COUNT
    pool = _threaded_pool()
    return ("sync", 1) if pool is None else ("threads", threads or pool._max_workers)


def check_main_guard() -> None:
    """Raise ``RuntimeError`` in a child process that computes while it re-imports the main script to start.

    A child started with multiprocessing's ``spawn`` or ``forkserver`` method (Dask's
    ``processes`` scheduler uses ``spawn`` unless ``multiprocessing.context`` says
    otherwise) first runs the main script again, as ``__mp_main__``: code that computes
    outside ``if __name__ == "__main__":`` computes again in every child.  Said here, it
    names the script's line; left alone, the child fails later with a lock error or a
    ``BrokenProcessPool``.

    >>> check_main_guard()  # the main process, or a child that has started
    """
    # multiprocessing's own check (spawn._check_not_importing_main) reads the same flag.
    if not getattr(multiprocessing.current_process(), "_inheriting", False):
        return
    script = None
    frame = inspect.currentframe()
    while frame is not None:  # the outermost frame of the re-imported script: its top-level line
        if frame.f_globals.get("__name__") == "__mp_main__":
            script = frame
        frame = frame.f_back
    where = "the main module" if script is None else \
        f"{script.f_globals.get('__file__', 'the main module')}, line {script.f_lineno},"
    raise RuntimeError(f"{where} computes while a child process re-imports it to start: multiprocessing's "
                       f"'spawn' and 'forkserver' start methods (the 'processes' scheduler's) run the main script "
                       f"again in every child. Put the code that computes under "
                       f"'if __name__ == \"__main__\":' in the script")


def _threaded_pool() -> Any:
    """The pool of ``dask.threaded`` that this thread belongs to, or ``None``."""
    from dask import threaded

    with threaded.pools_lock:
        pools = [threaded.default_pool, dask.config.get("pool", None), *(p for by in threaded.pools.values()
                                                                           for p in by.values())]
    # Dask neither names nor marks its threads; a ThreadPoolExecutor knows its own.
    return next((p for p in pools if threading.current_thread() in getattr(p, "_threads", ())), None)


@contextlib.contextmanager
def released() -> Iterator[None]:
    """Wait in this block without holding a worker's thread slot: a task's thread secedes, and rejoins after."""
    if not on_worker():
        yield
        return
    import distributed

    if threading.get_ident() not in distributed.get_worker().active_threads:  # a helper thread holds no slot
        yield
        return
    distributed.secede()
    try:
        yield
    finally:
        distributed.rejoin()


def in_thread(func: Callable[[], Any], name: str) -> concurrent.futures.Future:
    """Start ``func()`` in a daemon thread that sees this thread's context (its worker, if any); return its future.

    >>> in_thread(lambda: 6 * 7, "answer").result(timeout=5)
    42
    """
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_running_or_notify_cancel()

    def target() -> None:
        try:
            future.set_result(func())
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            future.set_exception(e)

    threading.Thread(target=contextvars.copy_context().run, args=(target,), name=name, daemon=True).start()
    return future


def wait_done(future: concurrent.futures.Future, timeout: float | None) -> bool:
    """Whether *future* is done within *timeout* seconds; the wait holds no worker thread slot."""
    with released():
        return not concurrent.futures.wait([future], timeout).not_done
