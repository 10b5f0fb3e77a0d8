"""Per-attempt timeouts of tasks: run the attempt in a helper thread, stop waiting when it is due.

Python cannot kill a thread: an attempt that runs past its timeout (blocked in a
system call, a stalled upload) is *abandoned*, not stopped.  Its thread runs on
to its end, in the background, and whatever it returns or raises is dropped.
On a ``distributed`` worker the task secedes while it waits, so the abandoned
thread never holds one of the worker's thread slots beyond the timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from daskgif.errors import TaskTimeout

__all__ = ["call_with_timeout", "check_timeouts", "TIMED_STEPS"]

#: The steps ``daskgif.task-timeout`` may name; ``map-frames`` only waits for its batches, which have their own.
TIMED_STEPS = ("fetch", "split", "write-frame", "combine")


def call_with_timeout(func: Callable, args: tuple, kwargs: Mapping[str, Any], timeout: float, name: str,
                      setting: str = "timeout") -> Any:
    """Return ``func(*args, **kwargs)``, or raise :class:`~daskgif.errors.TaskTimeout` after *timeout* seconds.

    The call runs in a daemon thread that sees the same ``distributed`` worker
    context as the caller; its late result is ignored.

    >>> call_with_timeout(pow, (2, 10), {}, 1.0, "pow")
    1024
    >>> import time
    >>> call_with_timeout(time.sleep, (5,), {}, 0.05, "nap")
    Traceback (most recent call last):
    ...
    daskgif.errors.TaskTimeout: task 'nap' ran past its timeout of 0.05 s (timeout); attempt abandoned
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    context = _worker_context()

    def target() -> None:
        _enter(context)
        try:
            box["value"] = func(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=target, name=f"daskgif-{name}-attempt", daemon=True).start()
    if not _wait(done, timeout):
        raise TaskTimeout(name, timeout, setting)
    if "error" in box:
        raise box.pop("error")
    return box["value"]


def _worker_context() -> dict | None:
    """The ``distributed`` thread state of this thread, if it runs a task on a worker."""
    from daskgif.core.task import _on_worker

    if not _on_worker():
        return None
    from distributed.worker import thread_state

    return dict(vars(thread_state))


def _enter(context: dict | None) -> None:
    if context is None:
        return
    from distributed.worker import thread_state

    for key, value in context.items():
        setattr(thread_state, key, value)


def _wait(done: threading.Event, timeout: float) -> bool:
    """Wait for *done*; on a worker, secede first so the wait holds no thread slot, and rejoin after."""
    from daskgif.core.task import _on_worker

    if not _on_worker():
        return done.wait(timeout)
    import distributed

    distributed.secede()
    try:
        return done.wait(timeout)
    finally:
        distributed.rejoin()


def check_timeouts(value: Any) -> dict[str, float | None]:
    """Turn ``daskgif.task-timeout`` (one number, ``null``, or a mapping by step) into seconds per step.

    >>> check_timeouts(30)
    {'fetch': 30, 'split': 30, 'write-frame': 30, 'combine': 30}
    >>> check_timeouts({"write-frame": 5})
    {'fetch': None, 'split': None, 'write-frame': 5, 'combine': None}
    >>> check_timeouts({"write": 5})
    Traceback (most recent call last):
    ...
    ValueError: daskgif.task-timeout must be null, a positive number of seconds or a mapping of fetch, split, \
write-frame, combine to them, got {'write': 5}
    """
    def seconds(v: Any) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0)

    if seconds(value):
        return {step: value for step in TIMED_STEPS}
    if isinstance(value, Mapping) and set(value) <= set(TIMED_STEPS) and all(map(seconds, value.values())):
        return {step: value.get(step) for step in TIMED_STEPS}
    raise ValueError("daskgif.task-timeout must be null, a positive number of seconds or a mapping of "
                     f"{', '.join(TIMED_STEPS)} to them, got {value!r}")
