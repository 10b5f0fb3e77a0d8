"""Launch tasks from a running task, in batches, on the scheduler that runs it: Dask's tasks-launching-tasks."""

from __future__ import annotations

import collections
import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import dask

from daskgif.core.runtime import current_scheduler
from daskgif.core.state import FAILED, MappedStates, State
from daskgif.errors import Cancelled, RunFailed

__all__ = ["BatchHook", "Releasable", "Mapped", "map_task", "run_batch", "fan_out", "batches", "batch_key"]


@runtime_checkable
class BatchHook(Protocol):
    """A :class:`~daskgif.core.task.Task` state hook that gets an item's final state only, then each batch's end."""

    def __call__(self, state: State) -> None: ...

    def end_batch(self, name: str, reused: int) -> None:
        """A batch of task *name* ended; *reused* of its items were kept from an earlier run, not run."""


@runtime_checkable
class Releasable(Protocol):
    """A keyword argument of :func:`map_task` that a batch's thread holds (an open file), released at its end."""

    def release(self) -> None: ...


@dataclass(frozen=True)
class Mapped:
    """What :func:`map_task` returns: the items' values in order and their :class:`MappedStates`."""

    values: Any
    states: MappedStates


def map_task(task: Any, items: Sequence, *, batch_size: int | str = "auto", token: str | None = None,
             reuse: Callable[[int, Any], Any] | None = None, collect: Callable[[int], Any] | None = None,
             **kwargs: Any) -> Mapped:
    """Run *task* (a :class:`~daskgif.core.task.Task`) on every item, with *kwargs*, in batches (:func:`fan_out`).

    If an item fails, every batch still runs; then ``RunFailed`` names the first failed item.
    ``reuse(index, item)`` returns what an earlier run left for an item (it is then not run), or ``None``;
    ``collect(first_index)`` makes what a batch appends values to (``None`` if failed or skipped), joined
    by its type's ``concat`` (default: lists).
    """
    items = items if isinstance(items, Sequence) else list(items)  # a compact sequence is cut, not copied
    return fan_out(functools.partial(run_batch, task, kwargs, reuse, collect), items, name=task.name,
                   batch_size=batch_size, token=token, gather=functools.partial(_joined, task))


def _joined(task: Any, parts: Sequence[Mapped | RunFailed]) -> Mapped:
    # The batches' values and states joined; if one failed, the RunFailed of the whole map.
    states = MappedStates(task.name)
    for part in parts:
        states.update(part.result.states[task.name] if isinstance(part, RunFailed) else part.states)
    if any(isinstance(part, RunFailed) for part in parts):
        raise task.failure({task.name: states}, [v for part in parts for v in part.values if v is not None])
    values = [part.values for part in parts]
    if values and not isinstance(values[0], list):  # a compact container joins its own kind
        return Mapped(type(values[0]).concat(values), states)
    return Mapped([v for part in values for v in part], states)


def run_batch(task: Any, kwargs: dict, reuse: Callable[[int, Any], Any] | None, collect: Callable[[int], Any] | None,
              first: int, items: Sequence) -> Mapped:
    """Run *task* on *items*, the first being map index *first*: one batch of :func:`map_task`."""
    values: Any = [] if collect is None else collect(first)
    states, reused = MappedStates(task.name), 0
    try:
        for i, item in enumerate(items, first):
            kept = None if reuse is None else reuse(i, item)
            if kept is not None:
                reused += 1
                values.append(kept)
                continue
            try:
                outcome = task.run(item, index=i, **kwargs)
            except RunFailed as e:
                states.update(e.result.states[task.name])
                values.append(None)
            else:
                states.add(outcome.state)
                values.append(outcome.value)
    finally:
        states.add_reused(reused)
        for hook in (h for h in task.on_state if isinstance(h, BatchHook)):
            hook.end_batch(task.name, reused)
        for value in (v for v in kwargs.values() if isinstance(v, Releasable)):
            value.release()
    if states.counts.get(FAILED):
        raise task.failure({task.name: states}, [v for v in values if v is not None])
    return Mapped(values, states)


def batches(items: Sequence, batch_size: int | str, threads: int) -> list[tuple[int, Sequence]]:
    """Cut *items* into ``(first index, batch)`` pairs; ``"auto"`` gives about four batches per thread, but one
    per thread until a batch holds 8 items (a batch costs a round trip).

    >>> batches(range(40), "auto", threads=2), batches(range(5), 4, threads=8)
    ([(0, range(0, 8)), (8, range(8, 16)), (16, range(16, 24)), (24, range(24, 32)), (32, range(32, 40))], \
[(0, range(0, 4)), (4, range(4, 5))])
    """
    n, threads = len(items), max(threads, 1)
    size = max(-(-n // (4 * threads)), min(8, -(-n // threads)), 1) if batch_size == "auto" else batch_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_size must be 'auto' or a positive integer, got {batch_size!r}")
    return [(i, items[i:i + size]) for i in range(0, len(items), size)]


def batch_key(name: str, first: int, batch: Sequence, token: str) -> str:
    """The key of the batch of *name* that starts at item *first*: ``key_split`` gives *name* back.

    >>> batch_key("write-frame", 375, range(375, 750), "5b3c")
    'write-frame-375-749-5b3c'
    """
    return f"{name}-{first}-{first + len(batch) - 1}-{token}"


def fan_out(func: Callable[[int, Sequence], Any], items: Sequence, *, name: str, batch_size: int | str = "auto",
            token: str | None = None, gather: Callable[[list], Any] = list) -> Any:
    """Run ``func(first_index, batch)`` on every batch of *items* as Dask tasks; return ``gather(results)``,
    where a batch's :class:`~daskgif.errors.RunFailed` is its result (every batch runs; other errors raise).

    >>> fan_out(lambda first, batch: sum(batch), range(10), name="add", batch_size=4)
    [6, 22, 17]
    """
    token = uuid.uuid4().hex if token is None else token
    scheduler, threads = current_scheduler()
    if scheduler == "distributed":
        return _on_cluster(func, items, name, batch_size, token, gather)
    tasks = [dask.delayed(_failure_as_value, pure=False)(func, i, batch, dask_key_name=batch_key(name, i, batch, token))
             for i, batch in batches(items, batch_size, threads)]
    threads_kwarg = {} if scheduler == "sync" else {"num_workers": threads}  # get_sync takes none
    return gather(list(dask.compute(*tasks, scheduler=scheduler, **threads_kwarg)))


def _failure_as_value(func: Callable[[int, Sequence], Any], first: int, batch: Sequence) -> Any:
    try:
        return func(first, batch)
    except RunFailed as e:  # returned, so that every batch runs and every item's state is kept
        return e


#: The futures of the last batches that failed: held, so the dashboard and ``Future.exception()`` show them
#: erred after their run has ended (a failed batch holds no data, only its exception).
FAILED_BATCHES: collections.deque = collections.deque(maxlen=256)


def _on_cluster(func: Callable, items: Sequence, name: str, batch_size: int | str, token: str,
                gather: Callable[[list], Any]) -> Any:
    from distributed import wait, worker_client

    with worker_client() as client:
        futures = [client.submit(func, i, batch, key=batch_key(name, i, batch, token), pure=False)
                   for i, batch in batches(items, batch_size, sum(client.nthreads().values()))]
        wait(futures)
        if any(f.status == "cancelled" for f in futures):
            raise Cancelled(f"run {token} was cancelled")
        done = iter(client.gather([f for f in futures if f.status == "finished"]))
        found = [next(done) if f.status == "finished" else f.exception() for f in futures]
        for error in found:
            if isinstance(error, BaseException) and not isinstance(error, RunFailed):
                raise error
        if any(isinstance(error, RunFailed) for error in found):  # the run fails: keep the erred batches in view,
            FAILED_BATCHES.extend(f for f in futures if f.status == "error")
            for future in futures:  # and free what finished now, not when the error that holds this frame goes
                if future.status == "finished":
                    future.release()
        return gather(found)
