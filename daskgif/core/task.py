"""Retries with a delay, a ``Skip`` signal and a state record per task, on plain Dask: a skip is a value,
a failure (once the retries are spent) a :class:`~daskgif.errors.RunFailed`, the task ``erred`` in Dask."""

from __future__ import annotations

import functools
import logging
import pickle
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
from dask.utils import funcname, key_split

from daskgif.core import runtime
from daskgif.core.fanout import BatchHook, Mapped, map_task
from daskgif.core.retry import RetryPolicy, error_line, retry
from daskgif.core.state import (FAILED, RETRYING, RUNNING, SKIPPED, SUCCESS, MappedStates, RunReport, State,
                                describe, first_failure, iter_states)
from daskgif.errors import Cancelled, RunFailed, TaskTimeout, is_transient
from daskgif.redact import mask

__all__ = ["Skip", "Outcome", "Task", "task"]

logger = logging.getLogger(__name__)


class Skip(Exception):
    """Raise inside a task to skip it; *result* is passed downstream as its value."""

    def __init__(self, message: str = "", result: Any = None):
        super().__init__(message, result)
        self.message, self.result = message, result

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Outcome:
    """The value of a task in the graph: its result, its state, and every state upstream, its own included."""

    value: Any
    state: State
    states: dict[str, Any] = field(default_factory=dict)


def portable(exc: BaseException) -> BaseException:
    """The cause a ``RunFailed`` chains: *exc* without its traceback and chain (a nested ``RunFailed`` keeps
    its cause), or a ``RuntimeError`` saying the same, masked, if *exc* does not pickle or holds a secret."""
    try:
        pickle.loads(pickle.dumps(exc))
        clean = mask(str(exc)) == str(exc)
    except Exception:
        clean = False
    if not clean:
        return RuntimeError(error_line(exc))
    if not isinstance(exc, RunFailed):
        exc.__cause__ = exc.__context__ = None
        exc.__suppress_context__ = True
    return exc.with_traceback(None)


class Task:
    """A function (raising :class:`Skip` to skip) with retries, a delay between them and state hooks.

    Parameters
    ----------
    name : str, optional
        Key prefix and name in states and logs: hyphenated words (``"write-frame"``).
    retries, retry_delay, backoff, max_delay, jitter, retry_if
        The :class:`~daskgif.core.retry.RetryPolicy`, and what may be retried.
    skip_on_upstream_skip : bool
        Skip when an upstream :class:`Outcome` was skipped; else run on the skip's result.
    on_state : sequence of callables
        Called where the task runs with each :class:`State` (``Running``, ``Retrying``, the final one).
    timeout, timeout_setting, record
        Seconds an attempt may run (then :class:`~daskgif.errors.TaskTimeout` names the setting), and the
        :class:`~daskgif.core.state.RunReport` class a ``RunFailed`` carries.

    >>> double = Task(lambda x: 2 * x, name="double")
    >>> outcome = double.run(21)
    >>> outcome.value, outcome.state.state, double.run(outcome).value
    (42, 'Success', 84)
    >>> double(21).compute(scheduler="sync").value
    42
    """

    def __init__(self, func: Callable, *, name: str | None = None, retries: int = 0, retry_delay: float = 0.0,
                 backoff: float = 1.0, max_delay: float = 300.0, jitter: float = 0.1,
                 retry_if: Callable[[BaseException], bool] = is_transient, skip_on_upstream_skip: bool = True,
                 on_state: Sequence[Callable[[State], None]] = (), timeout: float | None = None,
                 timeout_setting: str = "timeout", record: type[RunReport] = RunReport):
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        name = funcname(func) if name is None else name
        if not isinstance(name, str) or not name or key_split(f"{name}-{uuid.uuid4().hex}") != name:
            raise ValueError(f"name must be hyphenated words such as 'write-frame' (key prefix), got {name!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be None or a positive number of seconds, got {timeout!r}")
        functools.update_wrapper(self, func)
        self.func, self.name, self.retry_if, self.skip_on_upstream_skip = func, name, retry_if, skip_on_upstream_skip
        self.policy = RetryPolicy(retries, retry_delay, backoff, max_delay, jitter)
        self.on_state, self.record = tuple(on_state), record
        self.timeout, self.timeout_setting = timeout, timeout_setting
        self._item_hooks = tuple(h for h in self.on_state if not isinstance(h, BatchHook))

    def __repr__(self) -> str:
        return f"Task({self.name!r}, retries={self.policy.retries}, retry_delay={self.policy.retry_delay})"

    def __reduce__(self) -> Any:
        # ``@task`` replaces the module's function by this Task: pickle it by reference then.
        qualname = getattr(self, "__qualname__", "")
        by_name = getattr(sys.modules.get(self.__module__), qualname, None) is self
        return qualname if by_name else object.__reduce__(self)

    def __dask_tokenize__(self) -> Any:
        return (Task, self.name, self.func, self.policy, self.retry_if, self.skip_on_upstream_skip, self.on_state)

    def __call__(self, *args: Any, dask_key_name: str | None = None, **kwargs: Any) -> Any:
        """Return a lazy ``Delayed`` of :meth:`run`, keyed ``<name>-<unique token>``."""
        key = f"{self.name}-{uuid.uuid4().hex}" if dask_key_name is None else dask_key_name
        return dask.delayed(self.run, pure=False)(*args, dask_key_name=key, **kwargs)

    def run(self, *args: Any, index: int | None = None, **kwargs: Any) -> Outcome:
        """Run now, with retries, on the values of :class:`Outcome` arguments; return an :class:`Outcome`."""
        start, states, attempts, error = time.time(), {}, 0, None
        hooks = self.on_state if index is None else self._item_hooks

        def state(kind: str, message: str = "", end: float | None = None) -> State:
            return State(self.name, kind, attempts, start, end, message, index)

        upstream = [a for a in (*args, *kwargs.values()) if isinstance(a, Outcome)]
        for outcome in upstream:
            states.update(outcome.states)
        skipped = next((o.state for o in upstream if o.state.state == SKIPPED), None)
        if skipped is not None and self.skip_on_upstream_skip:
            return self._end(None, state(SKIPPED, f"upstream task {skipped.name!r} skipped", time.time()), states)
        args = tuple(a.value if isinstance(a, Outcome) else a for a in args)
        kwargs = {k: v.value if isinstance(v, Outcome) else v for k, v in kwargs.items()}

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            if hooks:
                self._report(state(RUNNING), hooks)
            return self._call(args, kwargs)

        try:
            value = retry(attempt, self.policy, retry_if=self._retryable,
                          on_retry=lambda e: self._report(state(RETRYING, error_line(e)), hooks),
                          operation=self.name if index is None else f"{self.name}[{index}]")
            kind, message = SUCCESS, ""
        except Skip as e:
            value, kind, message = e.result, SKIPPED, e.message
        except Cancelled:
            raise
        except Exception as e:  # raised by _end, outside this handler: RunFailed carries no unpicklable context
            value, kind, message, error = None, FAILED, error_line(e), e
        return self._end(value, state(kind, message, time.time()), states, error)

    def _retryable(self, error: BaseException) -> bool:
        return not isinstance(error, (Skip, RunFailed, Cancelled)) and self.retry_if(error)

    def _call(self, args: tuple, kwargs: dict) -> Any:
        if self.timeout is None:
            return self.func(*args, **kwargs)
        future = runtime.in_thread(functools.partial(self.func, *args, **kwargs), f"daskgif-{self.name}-attempt",
                                   timeout=self.timeout, give_up=True)
        if not future.done():
            raise TaskTimeout(self.name, self.timeout, self.timeout_setting)
        return future.result()

    def _report(self, state: State, hooks: Sequence[Callable[[State], None]] | None = None) -> None:
        # DEBUG where the task runs; the client logs states at INFO from the run's messages.
        logger.debug("Task %r%s: %s%s", self.name, "" if state.index is None else f"[{state.index}]", state.state,
                     f" ({state.message})" if state.message else "")
        for hook in self.on_state if hooks is None else hooks:
            try:
                hook(state)
            except Exception:
                logger.exception("State hook %r of task %r failed on %s state", hook, self.name, state.state)

    def _end(self, value: Any, state: State, states: dict, error: BaseException | None = None) -> Outcome:
        """Report *state* and add it to *states*; return the :class:`Outcome`, or raise ``RunFailed`` for *error*."""
        self._report(state)
        if isinstance(error, RunFailed) and isinstance(error.result, RunReport):  # keep a nested run's root cause
            states.update(error.result.states)
        if state.index is None:
            states[self.name] = state
        elif error is not None:
            states[self.name] = mapped = MappedStates(self.name)
            mapped.add(state)
        if isinstance(value, Mapped):
            states[value.states.name] = value.states
        if error is not None:
            raise self.failure(states) from portable(error)
        return Outcome(value, state, states)

    def failure(self, states: dict[str, Any], values: Sequence = ()) -> RunFailed:
        """The ``RunFailed`` of a run with these *states*, named after its root failure; *values* succeeded."""
        return RunFailed(describe(first_failure(iter_states(states))), self.record.failed(states), values)

    def map(self, items: Sequence, **options: Any) -> Mapped:
        """Run the task on every item, in batches launched where it runs (:func:`~daskgif.core.fanout.map_task`)."""
        return map_task(self, items, **options)


def task(func: Callable | None = None, **options: Any) -> Task | Callable[[Callable], Task]:
    """Make a :class:`Task` of a function; use as ``@task`` or ``@task(retries=2, ...)``."""
    return functools.partial(Task, **options) if func is None else Task(func, **options)
