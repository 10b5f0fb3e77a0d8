"""Launch tasks from a running task, on the scheduler that runs it: Dask's tasks-launching-tasks.

The number of frames is known only once ``split`` has run, so ``map-frames``
launches the per-frame batches itself, as Dask tasks keyed
``<name>-<first index>-<token>``:

- on a ``distributed`` worker, through :func:`distributed.worker_client`: the
  batches spread over every worker and show in the dashboard;
- elsewhere, through :func:`dask.compute` on the configured local scheduler
  (``dask.config`` ``scheduler`` and ``num_workers``, which
  :meth:`daskgif.pipeline.graph.Pipeline.compute` sets from its arguments): ``sync`` runs
  them one after another in the calling thread, ``threads`` on a pool of
  ``num_workers`` threads.  Inside a ``processes`` worker they run one after
  another in that process: a child process cannot start processes of its own.

A run is cancelled with :func:`cancel`; batches check :func:`cancelled` between
frames, so nothing is written once a stop request is handled.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import tempfile
import threading
import uuid
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import dask

from daskgif.errors import Cancelled, RunFailed
from daskgif.core.task import Mapped, _on_worker, failed_run

__all__ = ["fan_out", "batches", "cancel", "cancelled", "forget"]

_cancelled: set[str] = set()
_lock = threading.Lock()


def batches(items: Sequence, batch_size: int | str, threads: int) -> list[tuple[int, Sequence]]:
    """Cut *items* into ``(first index, batch)`` pairs; ``"auto"`` gives about four per thread.

    >>> batches([1, 2, 3, 4, 5], "auto", threads=1)
    [(0, [1, 2]), (2, [3, 4]), (4, [5])]
    >>> batches(range(5), 4, threads=8)
    [(0, range(0, 4)), (4, range(4, 5))]
    """
    size = max(1, math.ceil(len(items) / (4 * max(threads, 1)))) if batch_size == "auto" else batch_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_size must be 'auto' or a positive integer, got {batch_size!r}")
    return [(i, items[i:i + size]) for i in range(0, len(items), size)]


def _mark(token: str) -> str:
    """The file that tells the child processes of the ``processes`` scheduler that run *token* was cancelled."""
    return os.path.join(tempfile.gettempdir(), f"daskgif-cancelled-{token}")


def cancel(token: str) -> None:
    """Ask the batches of run *token* in this process, and its child processes, to stop before their next item."""
    with _lock:
        _cancelled.add(token)
    Path(_mark(token)).touch()


def forget(token: str) -> None:
    """Drop the cancellation mark of run *token*, once it has ended."""
    with _lock:
        _cancelled.discard(token)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_mark(token))


def cancelled(token: str) -> bool:
    """Whether run *token* was cancelled here, or (on a worker) the running task was cancelled by the scheduler."""
    if token in _cancelled:
        return True
    if multiprocessing.parent_process() is not None and os.path.exists(_mark(token)):
        return True
    if not _on_worker():
        return False
    from distributed import get_worker

    worker = get_worker()
    key = worker.get_current_task()
    task = worker.state.tasks.get(key)
    return task is None or task.state in ("cancelled", "released", "forgotten")


def check_cancelled(token: str) -> None:
    """Raise :class:`~daskgif.errors.Cancelled` if run *token* was cancelled."""
    if cancelled(token):
        raise Cancelled(f"run {token} was cancelled")


def fan_out(func: Callable[[int, Sequence], Mapped], items: Sequence, *, name: str,
            batch_size: int | str = "auto", token: str | None = None) -> list[Mapped]:
    """Run ``func(first_index, batch)`` on every batch of *items* as Dask tasks; return their results in order.

    Parameters
    ----------
    func : callable
        Runs one batch and returns a :class:`~daskgif.core.task.Mapped`; raises
        :class:`~daskgif.errors.RunFailed` when an item failed.
    items : sequence
        What to cut into batches.
    name : str
        Key prefix of the batches, e.g. ``"write-frame"``.
    batch_size : int or "auto"
        Items per batch; ``"auto"`` gives about four batches per worker thread.
    token : str, optional
        Key suffix; default unique.

    Raises
    ------
    RunFailed
        When a batch failed, with the states of every failed batch.

    Examples
    --------
    >>> from daskgif.core.task import Task
    >>> Task(abs, name="abs").map([-1, 2, -3], batch_size=2).values
    [1, 2, 3]
    """
    token = uuid.uuid4().hex if token is None else token
    if _on_worker():
        return _on_cluster(func, items, name, batch_size, token)
    in_child = multiprocessing.parent_process() is not None
    scheduler = "sync" if in_child else None
    threads = 1 if in_child else dask.config.get("num_workers", None) or _local_threads()
    tasks = [dask.delayed(_failure_as_value, pure=False)(func, i, batch, dask_key_name=f"{name}-{i}-{token}")
             for i, batch in batches(items, batch_size, threads)]
    done = dask.compute(*tasks, scheduler=scheduler)
    failed = [d for d in done if isinstance(d, RunFailed)]
    if failed:
        raise _merged(failed, [d for d in done if not isinstance(d, RunFailed)])
    return list(done)


def _failure_as_value(func: Callable[[int, Sequence], Mapped], first: int, batch: Sequence) -> Mapped | RunFailed:
    """Run one batch locally; its failure is returned, so every batch runs and every frame's state is kept."""
    try:
        return func(first, batch)
    except RunFailed as e:
        return e


def _merged(failed: Sequence[RunFailed], done: Sequence[Mapped]) -> RunFailed:
    """One failure of the whole map, keeping the states of the failed batches and of the finished ones."""
    states: dict[str, Any] = {}
    for found in [*(e.result.states for e in failed), *({m.states.name: m.states} for m in done)]:
        for key, value in found.items():
            if key in states and hasattr(value, "update"):
                states[key].update(value)
            else:
                states[key] = value
    error = failed_run(states)
    # What the batches did write, so the caller can record it (see daskgif.pipeline.resume).
    values = [v for e in failed for v in getattr(e, "values", ())] + [v for m in done for v in m.values if v is not None]
    error.values = values  # type: ignore[attr-defined]
    return error


def _local_threads() -> int:
    """Threads of the local scheduler that ``dask.compute`` would use now."""
    from dask.system import CPU_COUNT

    return 1 if dask.config.get("scheduler", None) in ("sync", "synchronous", "single-threaded") else CPU_COUNT


def _on_cluster(func: Callable, items: Sequence, name: str, batch_size: int | str, token: str) -> list[Mapped]:
    """Submit the batches from this worker, wait for all, and gather them or merge their failures."""
    from distributed import wait, worker_client

    with worker_client() as client:
        threads = sum(client.nthreads().values())
        futures = [client.submit(func, i, batch, key=f"{name}-{i}-{token}", pure=False)
                   for i, batch in batches(items, batch_size, threads)]
        wait(futures)
        if any(f.status == "cancelled" for f in futures):
            raise Cancelled(f"run {token} was cancelled")
        errors = [f.exception() for f in futures if f.status == "error"]
        if not errors:
            return client.gather(futures)
        done = client.gather([f for f in futures if f.status == "finished"])
    if not all(isinstance(e, RunFailed) for e in errors):
        raise next(e for e in errors if not isinstance(e, RunFailed))
    raise _merged(errors, done)
