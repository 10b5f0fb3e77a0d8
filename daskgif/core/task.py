"""Retries with a delay, a ``Skip`` signal and a state record per task, on plain Dask.

A :class:`Task` wraps a function; calling it builds a lazy ``dask.delayed`` node
whose value is an :class:`Outcome`: the function's value, its :class:`State`,
and the states of every task upstream of it.  A skip is a value.  A failure, once
the retries are spent, *raises* :class:`~daskgif.errors.RunFailed`, so the task
is ``erred`` in Dask (the dashboard, futures and the task stream point at it) and
Dask does not run what depends on it.  Retry delays never hold a ``distributed``
worker thread (the task secedes while it waits).
"""

from __future__ import annotations

import functools
import logging
import pickle
import sys
import time
import uuid
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import dask
from dask.base import tokenize
from dask.utils import funcname, key_split

from daskgif.errors import Cancelled, RunFailed
from daskgif.redact import mask
from daskgif.pipeline.result import Result
from daskgif.core.retry import RetryPolicy, is_transient
from daskgif.core.timeouts import call_with_timeout
from daskgif.core.state import (FAILED, RETRYING, RUNNING, SKIPPED, SUCCESS, MappedStates, State, describe,
                           first_failure, iter_states)

__all__ = ["SUCCESS", "SKIPPED", "FAILED", "RUNNING", "RETRYING", "Skip", "State", "Outcome", "RetryPolicy",
           "Task", "task", "Mapped", "is_transient", "first_failure", "failed_run"]

logger = logging.getLogger(__name__)


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
class Outcome:
    """The value of a task in the graph: its result, its state, and the states upstream of it.

    *states* maps each task name to its :class:`State` (a mapped task to its
    :class:`~daskgif.core.state.MappedStates`), this task's own included.
    """

    value: Any
    state: State
    states: Mapping[str, Any] = field(default_factory=dict)


def failed_run(states: Mapping[str, Any], cause: BaseException | None = None) -> RunFailed:
    """Return the :class:`RunFailed` of a run with these *states*, named after its root failure.

    >>> error = failed_run({"fetch": State("fetch", FAILED, 3, 0.0, 1.0, "FetchError: HTTP 503")})
    >>> str(error)
    "task 'fetch' failed after 3 attempts: FetchError: HTTP 503"
    >>> error.result.ok, error.result.counts()
    (False, {'fetch': {'Failed': 1}})
    """
    root = first_failure(iter_states(states))
    message = describe(root) if root is not None else f"{type(cause).__name__}: {cause}"
    starts = [s.start for s in iter_states(states) if s.start is not None]
    result = Result(ok=False, path=None, frames=(), states=dict(states),
                    started=min(starts, default=time.time()), finished=time.time())
    return RunFailed(message, result)


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


def _message(exc: BaseException) -> str:
    """One line naming the error, secrets masked: ``RunFailed`` already names its task, others get their type."""
    return mask(str(exc) if isinstance(exc, RunFailed) else f"{type(exc).__name__}: {exc}")


def portable(exc: BaseException) -> BaseException:
    """Return *exc*, or a ``RuntimeError`` saying the same if it cannot travel back to the client."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(_message(exc))
    return exc


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
        factor applied to the delay for each further retry.
    max_delay, jitter : float, float
        The longest wait between attempts, and the random fraction taken off
        each wait (see :class:`~daskgif.core.retry.RetryPolicy`).
    retry_if : callable, optional
        Called with the exception of a failed attempt; retry only if true.
        Default :func:`~daskgif.core.retry.is_transient`: permanent errors fail at once.
    skip_on_upstream_skip : bool
        Skip without running when an upstream :class:`Outcome` was skipped.
        When false the task runs and receives the skip's result.
    on_state : sequence of callables
        Called where the task runs with each :class:`State` it goes through
        (``Running``, ``Retrying``, then the final one).  A hook that raises is logged.
    timeout : float, optional
        Seconds one attempt may run; a later one fails with
        :class:`~daskgif.errors.TaskTimeout` (transient, so retried) and its
        thread is abandoned, its result ignored (see :mod:`daskgif.core.timeouts`).
    timeout_setting : str, optional
        The setting the timeout came from, named in the error.

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
    >>> Task(int, name="parse").run("x")
    Traceback (most recent call last):
    ...
    daskgif.errors.RunFailed: task 'parse' failed after 1 attempt: ValueError: invalid literal for int() with base 10: 'x'
    """

    def __init__(self, func: Callable, *, name: str | None = None, retries: int = 0, retry_delay: float = 0.0,
                 backoff: float = 1.0, max_delay: float = 300.0, jitter: float = 0.1,
                 retry_if: Callable[[BaseException], bool] = is_transient, skip_on_upstream_skip: bool = True,
                 on_state: Sequence[Callable[[State], None]] = (), timeout: float | None = None,
                 timeout_setting: str = "timeout"):
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        name = funcname(func) if name is None else name
        if not isinstance(name, str) or not name or key_split(f"{name}-{uuid.uuid4().hex}") != name:
            raise ValueError(f"name must be hyphenated words such as 'write-frame' (key prefix), got {name!r}")
        functools.update_wrapper(self, func)
        self.func = func
        self.name = name
        self.policy = RetryPolicy(retries, retry_delay, backoff, max_delay, jitter)
        self.retry_if = retry_if
        self.skip_on_upstream_skip = skip_on_upstream_skip
        self.on_state = tuple(on_state)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            raise ValueError(f"timeout must be None or a positive number of seconds, got {timeout!r}")
        self.timeout, self.timeout_setting = timeout, timeout_setting
        # A mapped item's passing states go only to hooks that want them (StateHook does not): one State less per item.
        self._item_hooks = tuple(h for h in self.on_state if getattr(h, "passing_items", True))

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

    def _report(self, state: State, hooks: Sequence[Callable[[State], None]] | None = None) -> State:
        for hook in self.on_state if hooks is None else hooks:
            try:
                hook(state)
            except Exception:
                logger.exception("State hook %r of task %r failed on %s state", hook, self.name, state.state)
        return state

    def _log(self, state: State) -> None:
        # DEBUG where the task runs; the client logs states at INFO from the run's messages (graph.watch).
        if not logger.isEnabledFor(logging.DEBUG):
            return
        logger.debug("Task %r%s: %s%s", self.name, "" if state.index is None else f"[{state.index}]", state.state,
                     f" ({state.message})" if state.message else "")

    def run(self, *args: Any, index: int | None = None, **kwargs: Any) -> Outcome:
        """Run now, with retries; return an :class:`Outcome` or raise :class:`~daskgif.errors.RunFailed`.

        Top-level *args* and *kwargs* that are :class:`Outcome` are replaced by
        their value, and their states are carried on.  If one was skipped and
        ``skip_on_upstream_skip``, this task is skipped without running.
        Otherwise the function is called: :class:`Skip` skips the task with the
        skip's result as value; an exception is retried while ``retry_if``
        accepts it and retries remain, else the task fails: ``RunFailed`` is
        raised, naming the task, its frame (*index*), the attempts and the
        cause, with the states known so far in its ``result``.
        ``KeyboardInterrupt`` and ``SystemExit`` propagate.

        Parameters
        ----------
        *args, **kwargs
            Passed to the function.
        index : int, optional
            Map index, recorded in the state.
        """
        start = time.time()
        upstream = [a for a in (*args, *kwargs.values()) if isinstance(a, Outcome)]
        states: dict[str, Any] = {}
        for outcome in upstream:
            states.update(outcome.states)
        skipped = next((o.state for o in upstream if o.state.state == SKIPPED), None)
        if skipped is not None and self.skip_on_upstream_skip:
            return self._finish(None, State(self.name, SKIPPED, 0, start, time.time(),
                                            f"upstream task {skipped.name!r} skipped", index), states)
        args = tuple(a.value if isinstance(a, Outcome) else a for a in args)
        kwargs = {k: v.value if isinstance(v, Outcome) else v for k, v in kwargs.items()}
        total = self.policy.retries + 1
        passing = self.on_state if index is None else self._item_hooks
        for attempt in range(1, total + 1):
            if passing:
                self._report(State(self.name, RUNNING, attempt, start, None, "", index), passing)
            try:
                value = self.func(*args, **kwargs) if self.timeout is None else \
                    call_with_timeout(self.func, args, kwargs, self.timeout, self.name, self.timeout_setting)
            except Cancelled:
                raise
            except Skip as e:
                return self._finish(e.result, State(self.name, SKIPPED, attempt, start, time.time(), e.message, index),
                                    states)
            except Exception as e:
                error = e
                if attempt == total or isinstance(e, RunFailed) or not self.retry_if(e):
                    break  # raised below, outside this handler, so RunFailed carries no unpicklable context
                logger.warning("Retrying %s%s after %s (attempt %d/%d)", self.name,
                               "" if index is None else f"[{index}]", _message(e), attempt, total)
                self._report(State(self.name, RETRYING, attempt, start, None, _message(e), index))
                _sleep(self.policy.delay(attempt))
            else:
                return self._finish(value, State(self.name, SUCCESS, attempt, start, time.time(), "", index), states)
        self._fail(State(self.name, FAILED, attempt, start, time.time(), _message(error), index), states, error)

    def _finish(self, value: Any, state: State, states: dict[str, Any]) -> Outcome:
        self._log(state)
        self._report(state)
        if state.index is None:
            states[self.name] = state
        if isinstance(value, Mapped):
            states[value.states.name] = value.states
        return Outcome(value, state, states)

    def _fail(self, state: State, states: dict[str, Any], error: BaseException) -> NoReturn:
        """Record *state* and raise ``RunFailed``; a nested run's failure keeps its root cause and states."""
        self._log(state)
        self._report(state)
        if isinstance(error, RunFailed) and error.result is not None:
            states.update(getattr(error.result, "states", {}))
        if state.index is None:
            states[self.name] = state
        else:
            mapped = MappedStates(self.name)
            mapped.add(state)
            states[self.name] = mapped
        raise failed_run(states, error) from portable(error)

    def __call__(self, *args: Any, dask_key_name: str | None = None, **kwargs: Any) -> Any:
        """Return a lazy ``Delayed`` of :meth:`run`, keyed ``<name>-<token>``, unique per call."""
        if dask_key_name is None:
            dask_key_name = f"{self.name}-{tokenize(self.name, args, kwargs, uuid.uuid4().hex)}"
        return dask.delayed(self.run, pure=False)(*args, dask_key_name=dask_key_name, **kwargs)

    def map(self, items: Sequence, *, batch_size: int | str = "auto", token: str | None = None,
            keep_all: bool = False, reuse: Container[int] | None = None, collect: Callable[[int], Any] | None = None,
            **kwargs: Any) -> Mapped:
        """Run the task on every item, in batches, from inside a running task.

        The batches are Dask tasks of their own (``<name>-<first index>-<token>``),
        launched where the calling task runs: on the cluster from a
        ``distributed`` worker, else on the local scheduler computing the graph
        (see :func:`daskgif.core.fanout.fan_out`).

        Parameters
        ----------
        items : sequence
            One run per item, with ``index`` its position; *kwargs* go to every run.
        batch_size : int or "auto"
            Items per batch; ``"auto"`` makes about four batches per worker thread.
        token : str, optional
            Key suffix of the batches; default unique.
        keep_all : bool
            Keep every item's :class:`State`, not only the remarkable ones.
        reuse : container of int, optional
            Indices not to run (kept from an earlier run, e.g. a
            :class:`~daskgif.pipeline.resume.Ranges`): counted as reused successes,
            their value ``None``, for the caller to fill in.
        collect : callable, optional
            ``collect(first_index)`` makes what a batch gathers its values in
            (an ``append`` per item, ``None`` for an item that failed or was
            skipped), and its type's ``concat(parts)`` joins the batches' in
            order: a compact container keeps a million values small.  Default: lists.

        Returns
        -------
        Mapped
            The values in the order of *items*, and their states.  If an item
            fails, the others of its batch still run, then ``RunFailed`` names
            the first failed item.

        Examples
        --------
        >>> Task(abs, name="abs").map([-1, 2, -3], batch_size=2).values
        [1, 2, 3]
        """
        from daskgif.core.fanout import fan_out

        items = items if isinstance(items, Sequence) else list(items)  # a compact sequence is cut, not copied
        batches = fan_out(functools.partial(run_items, self, kwargs, keep_all, reuse=reuse, collect=collect), items,
                          name=self.name,
                          batch_size=batch_size, token=token)
        return Mapped.concat(self.name, batches)


@dataclass(frozen=True)
class Mapped:
    """What :meth:`Task.map` returns: the items' values in order and their :class:`MappedStates`.

    A task returning a ``Mapped`` carries its states on into its :class:`Outcome`.
    """

    values: list
    states: MappedStates

    @classmethod
    def concat(cls, name: str, parts: Sequence[Mapped]) -> Mapped:
        """Join the results of consecutive batches."""
        states = MappedStates(name)
        for part in parts:
            states.update(part.states)
        if parts and not isinstance(parts[0].values, list):  # a compact container joins its own kind
            return cls(type(parts[0].values).concat([part.values for part in parts]), states)
        return cls([v for part in parts for v in part.values], states)


def run_items(task: Task, kwargs: dict, keep_all: bool, start: int, items: Sequence,
              reuse: Container[int] | None = None, collect: Callable[[int], Any] | None = None) -> Mapped:
    """Run *task* on consecutive *items*, the first being map index *start*; skip the indices in *reuse*.

    If an item fails, the others still run; then ``RunFailed`` names the first
    failure, and its ``values`` attribute holds the values of the items that succeeded.
    *collect* makes the container of the values (see :meth:`Task.map`).
    """
    values: Any = [] if collect is None else collect(start)
    states = MappedStates(task.name, keep_all=keep_all)
    reused = 0
    try:
        for i, item in enumerate(items, start):
            if reuse and i in reuse:
                reused += 1
                values.append(None)
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
        for hook in task.on_state:  # hooks may gather item states: they get them all before the batch ends
            if reused and hasattr(hook, "reused"):
                hook.reused(task.name, reused)
            flush = getattr(hook, "flush", None)
            if flush is not None:
                flush()
        for value in kwargs.values():  # what a batch holds open (the data file) is released by its thread
            release = getattr(value, "release", None)
            if callable(release):
                release()
    if states.counts.get(FAILED):
        error = failed_run({task.name: states})
        error.values = [v for v in values if v is not None]  # type: ignore[attr-defined]  # pickled with it
        raise error
    return Mapped(values, states)


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
