"""Retries with a delay, a ``Skip`` signal and a state record per task, on plain Dask.

A :class:`Task` wraps a function; calling it builds a lazy ``dask.delayed`` node
whose value is an :class:`Outcome` (the value and a :class:`State`).  Failures
never raise through the graph: downstream tasks see them and fail without
running.  :meth:`Task.map` fans out at run time from inside a running task.
Retry delays never hold a ``distributed`` worker thread (the task secedes).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import pickle
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import dask
from dask.base import tokenize
from dask.utils import funcname, key_split

__all__ = ["SUCCESS", "SKIPPED", "FAILED", "RUNNING", "RETRYING", "Skip", "State", "Outcome",
           "RetryPolicy", "Task", "task", "is_transient", "first_failure"]

logger = logging.getLogger(__name__)

SUCCESS, SKIPPED, FAILED = "Success", "Skipped", "Failed"
#: Passing states, given only to ``on_state`` hooks while a task runs.
RUNNING, RETRYING = "Running", "Retrying"

# Errors that say the code or its input is wrong: trying again gives the same answer.
PERMANENT = (TypeError, ValueError, LookupError, AttributeError, NameError, AssertionError,
             NotImplementedError, ArithmeticError, ImportError, FileNotFoundError, FileExistsError,
             IsADirectoryError, NotADirectoryError, PermissionError)


class Skip(Exception):
    """Raise inside a task to skip it; *result* is passed downstream as its value.

    >>> Skip("data file exists", result="image-data.img").result
    'image-data.img'
    """

    def __init__(self, message: str = "", result: Any = None):
        super().__init__(message, result)
        self.message = message
        self.result = result

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class State:
    """What happened to one run of a task (or to one item of a mapped task).

    >>> s = State("fetch", SKIPPED, attempts=1, start=10.0, end=10.5, message="data file exists")
    >>> s.ok, s.duration
    (True, 0.5)
    """

    name: str
    state: str
    attempts: int = 0
    start: float | None = None
    end: float | None = None
    message: str = ""
    index: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the task did not fail (a skipped task is ok)."""
        return self.state != FAILED

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while unknown."""
        return None if self.start is None or self.end is None else self.end - self.start

    def to_dict(self) -> dict:
        """Return the fields and the duration as a JSON-able dict."""
        return {**asdict(self), "duration": self.duration}


@dataclass(frozen=True)
class Outcome:
    """The value of a task in the graph: its result, its state and, when failed, the error."""

    value: Any
    state: State
    error: BaseException | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try again, and how long to wait before each retry.

    Examples
    --------
    >>> policy = RetryPolicy(retries=3, retry_delay=10, backoff=2)
    >>> [policy.delay(attempt) for attempt in (1, 2, 3)]
    [10.0, 20.0, 40.0]
    """

    retries: int = 0
    retry_delay: float = 0.0
    backoff: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {self.retries!r}")
        if not isinstance(self.retry_delay, (int, float)) or not self.retry_delay >= 0:
            raise ValueError(f"retry_delay must be a non-negative number of seconds, got {self.retry_delay!r}")
        if not isinstance(self.backoff, (int, float)) or not self.backoff > 0:
            raise ValueError(f"backoff must be a positive number, got {self.backoff!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number *attempt* (counted from 1)."""
        return float(self.retry_delay * self.backoff ** (attempt - 1))


def is_transient(exc: BaseException) -> bool:
    """Whether trying again may help: the default ``retry_if`` of a :class:`Task`.

    An exception's own ``transient`` attribute decides when it has one (all
    daskgif errors do).  Otherwise errors that point at the code or the input
    (``TypeError``, ``ValueError``, ``KeyError``, a missing file, ...) and
    :class:`Skip` are permanent; everything else (connection errors, timeouts,
    ``RuntimeError``, other ``OSError``) is transient.

    >>> is_transient(ConnectionResetError()), is_transient(KeyError("x")), is_transient(Skip())
    (True, False, False)
    """
    transient = getattr(exc, "transient", None)
    if transient is not None:
        return bool(transient)
    return not isinstance(exc, (Skip, *PERMANENT))


def first_failure(states: Iterable[State]) -> State | None:
    """Return the root failure: the first failed state that ran, else the first failed one.

    >>> first_failure([State("fetch", FAILED, 3, message="OSError: x"), State("split", FAILED)]).name
    'fetch'
    >>> first_failure([State("fetch", SUCCESS)]) is None
    True
    """
    failed = [s for s in states if s.state == FAILED]
    return next((s for s in failed if s.attempts), failed[0] if failed else None)


def _on_worker() -> bool:
    """Whether this thread runs a task on a ``distributed`` worker."""
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker
    try:
        get_worker()
    except ValueError:
        return False
    return True


def _sleep(seconds: float) -> None:
    """Sleep without holding a worker thread: secede on ``distributed``, rejoin after."""
    if seconds <= 0:
        return
    if not _on_worker():
        time.sleep(seconds)
        return
    import distributed
    distributed.secede()
    try:
        time.sleep(seconds)
    finally:
        distributed.rejoin()


def _portable(exc: BaseException) -> BaseException:
    """Return *exc*, or a ``RuntimeError`` saying the same if it cannot travel back to the client."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _batches(items: list, batch_size: int | str, threads: int) -> list[tuple[int, list]]:
    """Cut *items* into ``(first index, batch)`` pairs; ``"auto"`` gives about four per thread.

    >>> _batches([1, 2, 3, 4, 5], "auto", threads=1)
    [(0, [1, 2]), (2, [3, 4]), (4, [5])]
    """
    size = max(1, math.ceil(len(items) / (4 * max(threads, 1)))) if batch_size == "auto" else batch_size
    return [(i, items[i:i + size]) for i in range(0, len(items), size)]


def _run_batch(task: Task, start: int, items: Sequence, kwargs: dict) -> list[Outcome]:
    """Run *task* on consecutive *items*, the first one being map index *start*."""
    return [task.run(item, index=start + i, **kwargs) for i, item in enumerate(items)]


class Task:
    """A function with retries, a delay between them, skip handling and state hooks.

    Parameters
    ----------
    func : callable
        What the task does.  Raise :class:`Skip` in it to skip the task.
    name : str, optional
        Key prefix and name in states and logs (``"write-frame"``): hyphenated
        words that :func:`dask.utils.key_split` keeps.  Default the function's name.
    retries, retry_delay, backoff : int, float, float
        Attempts after the first, seconds before the first retry, and the
        factor applied to the delay for each further retry (see :class:`RetryPolicy`).
    retry_if : callable, optional
        Called with the exception of a failed attempt; retry only if true.
        Default :func:`is_transient`.
    skip_on_upstream_skip : bool
        Skip without running when an upstream :class:`Outcome` was skipped.
        When false the task runs and receives the skip's result.
    on_state : sequence of callables
        Called on the worker with each :class:`State` the task goes through
        (``Running``, ``Retrying``, then the final one).  A hook that raises is logged.

    Examples
    --------
    >>> double = Task(lambda x: 2 * x, name="double")
    >>> outcome = double.run(21)
    >>> outcome.value, outcome.state.state, outcome.state.attempts
    (42, 'Success', 1)
    >>> double.run(outcome).value        # an upstream Outcome is replaced by its value
    84
    >>> double(21).compute(scheduler="sync").value
    42
    """

    def __init__(self, func: Callable, *, name: str | None = None, retries: int = 0, retry_delay: float = 0.0,
                 backoff: float = 1.0, retry_if: Callable[[BaseException], bool] = is_transient,
                 skip_on_upstream_skip: bool = True, on_state: Sequence[Callable[[State], None]] = ()):
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        name = funcname(func) if name is None else name
        if not isinstance(name, str) or not name or key_split(f"{name}-{uuid.uuid4().hex}") != name:
            raise ValueError(f"name must be hyphenated words such as 'write-frame' (key prefix), got {name!r}")
        functools.update_wrapper(self, func)
        self.func = func
        self.name = name
        self.policy = RetryPolicy(retries, retry_delay, backoff)
        self.retry_if = retry_if
        self.skip_on_upstream_skip = skip_on_upstream_skip
        self.on_state = tuple(on_state)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, retries={self.policy.retries}, retry_delay={self.policy.retry_delay})"

    def __reduce__(self) -> Any:
        # ``@task`` replaces the module's function by this Task: pickle it by reference then.
        qualname = getattr(self, "__qualname__", "")
        if getattr(sys.modules.get(self.__module__), qualname, None) is self:
            return qualname
        return object.__reduce__(self)

    def __dask_tokenize__(self) -> Any:
        return (Task, self.name, self.func, self.policy, self.retry_if, self.skip_on_upstream_skip, self.on_state)

    def _report(self, state: State) -> State:
        for hook in self.on_state:
            try:
                hook(state)
            except Exception:
                logger.exception("State hook %r of task %r failed on %s state", hook, self.name, state.state)
        return state

    def _finish(self, value: Any, state: State, error: BaseException | None = None) -> Outcome:
        where = "" if state.index is None else f"[{state.index}]"
        level = logging.ERROR if state.state == FAILED and state.attempts else logging.INFO
        logger.log(level, "Task %r%s: %s%s", self.name, where, state.state,
                   f" ({state.message})" if state.message else "")
        self._report(state)
        return Outcome(value, state, None if error is None else _portable(error))

    def run(self, *args: Any, index: int | None = None, **kwargs: Any) -> Outcome:
        """Run now, with retries, and return an :class:`Outcome`; never raise a task error.

        Top-level *args* and *kwargs* that are :class:`Outcome` are replaced by
        their value.  If one of them failed, this task fails without running;
        if one was skipped and ``skip_on_upstream_skip``, it is skipped without
        running.  Otherwise the function is called: :class:`Skip` skips the
        task with the skip's result as value; an exception is retried while
        ``retry_if`` accepts it and retries remain, else the task fails.
        ``KeyboardInterrupt`` and ``SystemExit`` propagate.

        Parameters
        ----------
        *args, **kwargs
            Passed to the function.
        index : int, optional
            Map index, recorded in the state.
        """
        start = time.time()
        upstream = [a.state for a in (*args, *kwargs.values()) if isinstance(a, Outcome)]
        for wanted, flag in ((FAILED, True), (SKIPPED, self.skip_on_upstream_skip)):
            culprit = next((s for s in upstream if s.state == wanted), None)
            if flag and culprit is not None:
                message = f"upstream task {culprit.name!r} {wanted.lower()}"
                return self._finish(None, State(self.name, wanted, 0, start, time.time(), message, index))
        args = tuple(a.value if isinstance(a, Outcome) else a for a in args)
        kwargs = {k: v.value if isinstance(v, Outcome) else v for k, v in kwargs.items()}
        logger.debug("Task %r%s: starting", self.name, "" if index is None else f"[{index}]")
        total = self.policy.retries + 1
        for attempt in range(1, total + 1):
            self._report(State(self.name, RUNNING, attempt, start, None, "", index))
            try:
                value = self.func(*args, **kwargs)
            except Skip as e:
                return self._finish(e.result, State(self.name, SKIPPED, attempt, start, time.time(), e.message, index))
            except Exception as e:
                message = f"{type(e).__name__}: {e}"
                if attempt == total or not self.retry_if(e):
                    return self._finish(None, State(self.name, FAILED, attempt, start, time.time(), message, index), e)
                logger.warning("Retrying %s after %r (attempt %d/%d)", self.name, e, attempt, total)
                self._report(State(self.name, RETRYING, attempt, start, None, message, index))
                _sleep(self.policy.delay(attempt))
            else:
                return self._finish(value, State(self.name, SUCCESS, attempt, start, time.time(), "", index))
        raise AssertionError("unreachable")  # pragma: no cover

    def __call__(self, *args: Any, dask_key_name: str | None = None, **kwargs: Any) -> Any:
        """Return a lazy ``Delayed`` of :meth:`run`, keyed ``<name>-<token>``, unique per call."""
        if dask_key_name is None:
            dask_key_name = f"{self.name}-{tokenize(self.name, args, kwargs, uuid.uuid4().hex)}"
        return dask.delayed(self.run, pure=False)(*args, dask_key_name=dask_key_name, **kwargs)

    def map(self, items: Sequence, *, batch_size: int | str = "auto", token: str | None = None,
            **kwargs: Any) -> list[Outcome]:
        """Run the task on every item, in batches, from inside a running task.

        Parameters
        ----------
        items : sequence
            One run per item, with ``index`` its position; *kwargs* go to every run.
        batch_size : int or "auto"
            Items per batch; ``"auto"`` makes about four batches per worker thread.
        token : str, optional
            Key suffix of the batches (``<name>-<first index>-<token>``); default unique.

        Returns
        -------
        list of Outcome
            In the order of *items*.  A failed item does not stop the others.

        Examples
        --------
        >>> [o.value for o in Task(abs, name="abs").map([-1, 2, -3], batch_size=2)]
        [1, 2, 3]
        """
        items = list(items)
        if batch_size != "auto" and (not isinstance(batch_size, int) or isinstance(batch_size, bool)
                                     or batch_size < 1):
            raise ValueError(f"batch_size must be 'auto' or a positive integer, got {batch_size!r}")
        token = uuid.uuid4().hex if token is None else token
        if not _on_worker():
            threads = os.cpu_count() or 1
            with ThreadPoolExecutor(max_workers=threads) as pool:
                futures = [pool.submit(_run_batch, self, i, batch, kwargs)
                           for i, batch in _batches(items, batch_size, threads)]
                return [o for f in futures for o in f.result()]
        from distributed import worker_client
        with worker_client() as client:
            futures = [client.submit(_run_batch, self, i, batch, kwargs, key=f"{self.name}-{i}-{token}", pure=False)
                       for i, batch in _batches(items, batch_size, sum(client.nthreads().values()))]
            return [o for batch in client.gather(futures) for o in batch]


def task(func: Callable | None = None, **options: Any) -> Task | Callable[[Callable], Task]:
    """Make a :class:`Task` of a function; use as ``@task`` or ``@task(retries=2, ...)``.

    >>> @task(name="add-one", retries=2)
    ... def add_one(x):
    ...     return x + 1
    >>> add_one.run(1).value, add_one.policy.retries
    (2, 2)
    """
    if func is None:
        return functools.partial(Task, **options)
    return Task(func, **options)
