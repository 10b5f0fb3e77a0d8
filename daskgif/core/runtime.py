"""Where code runs, and how it waits there: one answer to each question, for all of daskgif."""

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
           "in_thread", "given_up"]

#: The names of Dask's local schedulers (``dask.base.named_schedulers``); the first three are one thread.
LOCAL_SCHEDULERS = ("sync", "synchronous", "single-threaded", "threads", "threading", "processes", "multiprocessing")


def on_worker() -> bool:
    """Whether this thread runs a task on a ``distributed`` worker."""
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker  # imported, not looked up: waits for an import under way in another thread

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
    from dask import threaded

    with threaded.pools_lock:
        pools = [threaded.default_pool, dask.config.get("pool", None),
                 *(p for by in threaded.pools.values() for p in by.values())]
    # Dask neither names nor marks its threads; a ThreadPoolExecutor knows its own.
    pool = next((p for p in pools if threading.current_thread() in getattr(p, "_threads", ())), None)
    return ("sync", 1) if pool is None else ("threads", threads or pool._max_workers)


def check_main_guard() -> None:
    """Raise ``RuntimeError``, naming the line, in a child process that computes while it re-imports the
    main script to start (multiprocessing's ``spawn``); left alone, the child would fail later, obscurely."""
    # multiprocessing's own check (spawn._check_not_importing_main) reads the same flag.
    if not getattr(multiprocessing.current_process(), "_inheriting", False):
        return
    # The outermost frame of the re-imported script: its top-level line.
    script = next((f.frame for f in reversed(inspect.stack(0)) if f.frame.f_globals.get("__name__") == "__mp_main__"),
                  None)
    where = "the main module" if script is None else \
        f"{script.f_globals.get('__file__', 'the main module')}, line {script.f_lineno},"
    raise RuntimeError(f"{where} computes while a child process re-imports it to start: multiprocessing's 'spawn' "
                       f"and 'forkserver' start methods (the 'processes' scheduler's) run the main script again in "
                       f"every child. Put the code that computes under 'if __name__ == \"__main__\":' in the script")


@contextlib.contextmanager
def released() -> Iterator[None]:
    """Wait in this block without holding a worker's thread slot: a task's thread secedes, and rejoins after."""
    if not on_worker():
        yield
        return
    import distributed

    slot = threading.get_ident() in distributed.get_worker().active_threads  # a task's helper thread holds none
    if slot:
        distributed.secede()
    try:
        yield
    finally:
        if slot:
            distributed.rejoin()


def in_thread(func: Callable[[], Any], name: str, timeout: float | None = None, *,
              give_up: bool = False) -> concurrent.futures.Future:
    """Start ``func()`` in a daemon thread that sees this thread's context (its worker, if any), wait for it at
    most *timeout* seconds holding no worker thread slot, and return its future (a late result is dropped).
    With *give_up*, a thread still running then is marked :func:`given_up`: its work stops at its next check.

    >>> in_thread(lambda: 6 * 7, "answer", timeout=5).result()
    42
    """
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_running_or_notify_cancel()

    def target() -> None:
        try:
            future.set_result(func())
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            future.set_exception(e)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(target,), name=name, daemon=True)
    thread.start()
    with released():
        concurrent.futures.wait([future], timeout)
        if give_up and not future.done():  # before a rejoin that may wait for a thread slot
            thread.given_up = True  # type: ignore[attr-defined]
    return future


def given_up() -> bool:
    """Whether this thread runs the ``func`` of an :func:`in_thread` whose caller stopped waiting for it: what
    it does is no one's any more (a timed-out attempt, already being retried).

    >>> given_up()
    False
    """
    return getattr(threading.current_thread(), "given_up", False)
