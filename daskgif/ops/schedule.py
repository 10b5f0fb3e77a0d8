"""Run the pipeline repeatedly, every fixed interval or on a cron schedule, each run on a fresh graph.

Runs never overlap: one that outlasts its interval delays the next, and says so.  Each run is reported
to a history file and a webhook; a failed run does not end the schedule.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any

from daskgif.core.retry import error_line
from daskgif.core.runtime import find_client
from daskgif.errors import DaskgifError, RunFailed
from daskgif.ops.cluster import Cancelled, compute, wait_for
from daskgif.ops.history import append_run
from daskgif.ops.notify import post_result
from daskgif.pipeline.graph import build_graph
from daskgif.pipeline.kinds import check_cron, check_url, parse_duration
from daskgif.pipeline.parameters import by_name
from daskgif.pipeline.settings import read_setting
from daskgif.redact import safe_parameters, scrub

__all__ = ["parse_duration", "next_fire", "Every", "Cron", "ScheduledRun", "run_schedule", "run_once", "report_run",
           "describe_due", "IDLE_CLUSTER_LIMIT"]

logger = logging.getLogger(__name__)

#: Seconds of waiting for the next run above which a cluster the schedule started is closed until then:
#: an idle 2-worker ``LocalCluster`` holds ~175 MiB, and starting one takes 1.5-2 s (docs: "Schedules").
IDLE_CLUSTER_LIMIT = 300.0


def next_fire(expr: str, after: datetime) -> datetime:
    """Return the first time strictly after *after* at which the cron expression *expr* fires, in *after*'s zone.

    >>> from datetime import timezone
    >>> next_fire("0 2 * * *", datetime(2024, 1, 1, 3, 0, tzinfo=timezone.utc))
    datetime.datetime(2024, 1, 2, 2, 0, tzinfo=datetime.timezone.utc)
    >>> next_fire("*/15 * * * *", datetime(2024, 1, 1, 3, 0, tzinfo=timezone.utc)).minute
    15
    """
    from croniter import croniter

    return croniter(check_cron(expr), after).get_next(datetime)


@dataclass(frozen=True)
class Every:
    """Fire now, then every *seconds*."""

    seconds: float

    def first(self, now: float) -> float:
        return now

    def after(self, previous: float) -> float:
        return previous + self.seconds

    def __str__(self) -> str:
        return f"every {self.seconds:g} s"


@dataclass(frozen=True)
class Cron:
    """Fire at the times of a cron expression, in time zone *tz* (default: the local one)."""

    expr: str
    tz: tzinfo | None = None

    def __post_init__(self) -> None:
        check_cron(self.expr)

    def first(self, now: float) -> float:
        return self.after(now)

    def after(self, previous: float) -> float:
        from dateutil.tz import tzlocal

        return next_fire(self.expr, datetime.fromtimestamp(previous, self.tz or tzlocal())).timestamp()

    def __str__(self) -> str:
        return f"cron {self.expr!r}"


@dataclass
class ScheduledRun:
    """One run of a schedule: when it ran, whether it succeeded, and its :class:`~daskgif.pipeline.result.Result`
    (also of a failed run; ``None`` when the run failed before producing one, or was cancelled); ``batch``: the id
    of its batch of inputs (``daskgif run --url 'PATTERN'``, ``--watch``), if any."""

    number: int
    scheduled: float
    started: float
    finished: float
    ok: bool
    result: Any = None
    message: str = ""
    cancelled: bool = False
    parameters: dict = field(default_factory=dict)
    batch: str | None = None

    @property
    def duration(self) -> float:
        """Seconds from the run's start to its end, as history records it."""
        return self.finished - self.started

    def to_json(self) -> dict[str, Any]:
        """The run as the CLI prints it with ``--json``: the result's fields and the run's, secrets masked."""
        result = {"ok": False, "out": self.parameters.get("out"), "size": None, "frames": [], "states": {}} \
            if self.result is None else self.result.to_dict()
        return scrub({**result, "ok": self.ok, "run": self.number, "cancelled": self.cancelled,
                      "message": self.message, "duration": round(self.duration, 3),
                      **({"batch": self.batch, "url": self.parameters.get("url")} if self.batch else {})})

    def to_record(self) -> dict[str, Any]:
        """Return the run as one JSON-able history record."""
        result = self.result
        return scrub({"run": self.number, "start": iso(self.started), "end": iso(self.finished),
                      "duration": round(self.duration, 3), "ok": self.ok, "cancelled": self.cancelled,
                      "out": None if result is None else result.path,
                      "frames": None if result is None else len(result.frames),
                      "states": {} if result is None else result.counts(),
                      "message": self.message, "parameters": self.parameters,
                      **({"batch": self.batch} if self.batch else {})})


def describe_due(due: float, now: float, tz: tzinfo | None = None) -> str:
    """Say when *due* is (Unix seconds): in time zone *tz* (default: the local one) and in UTC, and how far off.

    >>> from datetime import timezone
    >>> from zoneinfo import ZoneInfo
    >>> due = datetime(2024, 1, 2, 2, 0, tzinfo=timezone.utc).timestamp()
    >>> describe_due(due, due - 9000, ZoneInfo("Europe/Paris"))
    'at 2024-01-02 03:00:00 CET (02:00:00 UTC), in 2 h 30 min'
    >>> describe_due(due, due - 42, ZoneInfo("America/New_York"))
    'at 2024-01-01 21:00:00 EST (2024-01-02 02:00:00 UTC), in 42 s'
    """
    local = datetime.fromtimestamp(due, tz) if tz is not None else datetime.fromtimestamp(due).astimezone()
    utc = datetime.fromtimestamp(due, timezone.utc)
    day = "" if utc.date() == local.date() else f"{utc:%Y-%m-%d} "
    return f"at {local:%Y-%m-%d %H:%M:%S %Z} ({day}{utc:%H:%M:%S} UTC), in {describe_seconds(due - now)}"


def describe_seconds(seconds: float) -> str:
    """A wait in words, to the second below an hour and to the minute above, rounded up.

    >>> describe_seconds(0.4), describe_seconds(250), describe_seconds(86400 + 60)
    ('1 s', '4 min 10 s', '24 h 1 min')
    """
    seconds = max(math.ceil(seconds), 0)
    hours, minutes = divmod(seconds // 60, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds % 60} s" if minutes else f"{seconds} s"


def iso(timestamp: float) -> str:
    """Local time with its UTC offset, to the millisecond."""
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="milliseconds")


def run_once(params: Mapping[str, Any], *, number: int = 1, client: Any = None, scheduler: str | None = None,
             stop: threading.Event | None = None, clock: Callable[[], float] = time.time,
             stop_timeout: float | None = None, scheduled: float | None = None, graph: Any = None,
             progress: Callable[[], Any] | None = None) -> ScheduledRun:
    """Run the pipeline once (a fresh graph from *params*, or *graph*); never raises for a failed run.

    The run goes to *client*, else to the local *scheduler*; *progress* makes the context manager that shows
    its progress; setting *stop* cancels it (:func:`daskgif.ops.cluster.compute`), then waits *stop_timeout*
    seconds (default ``daskgif.stop-timeout``) for tasks already executing.
    """
    stop_timeout = read_setting("stop-timeout") if stop_timeout is None else stop_timeout
    started = clock()
    run = ScheduledRun(number, started if scheduled is None else scheduled, started, started, ok=False,
                       parameters=safe_parameters(params))
    try:
        graph = build_graph(**params) if graph is None else graph
        with progress() if progress is not None else contextlib.nullcontext():
            run.result = compute(graph, client=client, scheduler=scheduler, stop=stop, stop_timeout=stop_timeout,
                                 number=number)
    except Cancelled as e:
        run.cancelled, run.message = True, str(e)
    except RunFailed as e:
        run.result, run.message = e.result, str(e)
    except Exception as e:  # noqa: BLE001 - a scheduled run must not end the schedule (KilledWorker, ...)
        if not isinstance(e, (DaskgifError, OSError, ValueError, TypeError, RuntimeError)):
            logger.exception("Run %d failed unexpectedly", number)
        run.message = f"{type(e).__name__}: {e}"
    else:
        run.ok = bool(getattr(run.result, "ok", False))
    run.finished = clock()
    if run.result is not None and getattr(run.result, "started", 0):
        run.started = min(run.started, run.result.started)
    return run


def report_run(run: ScheduledRun, *, notify: str | None = None, history: str | None = None,
               storage_options: dict | None = None, sender: Executor | None = None) -> None:
    """Append *run* to the *history* file and POST it to the *notify* webhook (in *sender*, if given, so that a
    webhook retried or slow never delays the next run); log failures, never raise."""
    record = run.to_record()
    if history:
        try:
            append_run(history, record, storage_options=storage_options)
        except Exception as e:  # noqa: BLE001 - the history is a report; it never fails the run
            logger.error("Cannot append run %d to the history %s: %s: %s", run.number, history, type(e).__name__, e)
    if notify:
        payload = {**record, "result": None if run.result is None else scrub(run.result.to_dict())}
        post = functools.partial(post_result, notify, payload, timeout=read_setting("notify-timeout"),
                                 retries=read_setting("notify-retries"), retry_delay=read_setting("notify-retry-delay"))
        if sender is None:
            post()
        else:
            sender.submit(post).add_done_callback(log_failed_post)


@contextlib.contextmanager
def posts_beside(stop: threading.Event) -> Iterator[Executor]:
    """A thread for webhook posts, one at a time in run order.  At the end every post is sent, unless *stop* is
    set or an error (a second Ctrl-C) ends the schedule: then the ones queued are dropped."""
    sender = ThreadPoolExecutor(1, thread_name_prefix="daskgif-notify")
    try:
        yield sender
    except BaseException:
        sender.shutdown(wait=False, cancel_futures=True)
        raise
    sender.shutdown(wait=not stop.is_set(), cancel_futures=stop.is_set())


def log_failed_post(future: Future) -> None:
    """Log what a webhook post in the background raised (``post_result`` logs the failures it expects)."""
    if not future.cancelled() and future.exception() is not None:
        logger.error("Notification not sent: %s", error_line(future.exception()))


def run_schedule(params: Mapping[str, Any] | Callable[[int], Mapping[str, Any]], *, every: str | float | None = None,
                 cron: str | None = None, max_runs: int | None = None, client: Any = None, scheduler: str | None = None,
                 notify: str | None = None, history: str | None = None, storage_options: dict | None = None,
                 on_result: Callable[[ScheduledRun], None] | None = None, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], Any] | None = None,
                 tz: tzinfo | None = None, graph: Any = None, progress: Callable[[], Any] | None = None,
                 keep: int | None = None, cluster: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
                 idle_limit: float = IDLE_CLUSTER_LIMIT,
                 on_wait: Callable[[int, float], None] | None = None,
                 job: Callable[..., list[ScheduledRun]] | None = None) -> list[ScheduledRun]:
    """Run the pipeline on a schedule; return every :class:`ScheduledRun` (only the last *keep* ones, if given).

    Parameters
    ----------
    params : dict or callable
        ``build_graph`` arguments, or a function of the run number returning them (*graph*: the first run's).
    every, cron : str or float, optional
        The interval between run starts (``"24h"``, ``"1h30m"``, seconds), the first run at once; or a cron
        expression (``"0 2 * * *"``) in time zone *tz* (default: the local one), until *max_runs* runs or
        *stop*.  Neither: one run, at once.
    client, scheduler, cluster : optional
        Where the runs go: a ``distributed.Client``; else the local *scheduler*; or *cluster*, a function making
        a context manager that yields a client, started before a run when none is up and closed before a wait
        over *idle_limit* seconds (:data:`IDLE_CLUSTER_LIMIT`) and every ``daskgif.schedule.recycle-every`` runs.
    notify, history, storage_options : optional
        A webhook URL (:func:`~daskgif.ops.notify.post_result`), an fsspec file that gets one JSON line per run
        (:func:`~daskgif.ops.history.append_run`), and its fsspec options (default those in *params*).
    on_result, on_wait, progress : callable, optional
        Called with each run once reported; called as ``on_wait(number, due)`` before each wait (after the
        cluster was closed, if it was); makes the context manager that shows a run's progress.
    stop, clock, sleep : optional
        Set *stop* (e.g. from a signal handler) to end the schedule, at once between runs; a run under way
        is cancelled.  *sleep* ends early (returning True) when *stop* is set.
    job : callable, optional
        Makes each run instead of one pipeline of *params*: called as ``job(number, client=..., scheduler=...,
        stop=..., scheduled=...)``, it returns the runs it made (a batch of inputs: one each, each reported);
        when it returns none (nothing new to run) the turn is not counted as a run.

    Examples
    --------
    Two runs, 0.1 s apart, kept in memory:

    >>> params = {"data_file": "memory://nightly/data.img", "out": "memory://nightly/clip.gif",
    ...           "frames_dir": "memory://nightly/frames"}
    >>> runs = run_schedule(params, every=0.1, max_runs=2, scheduler="sync")
    >>> [(run.number, run.ok, len(run.result.frames)) for run in runs]
    [(1, True, 32), (2, True, 32)]
    """
    if every is not None and cron is not None:
        raise ValueError("every and cron are mutually exclusive; give one of them")
    if max_runs is not None:
        by_name("max_runs").check(max_runs)
    if notify is not None:
        check_url(notify)
    plan = Every(parse_duration(every, "every")) if every is not None else Cron(cron, tz) if cron is not None else None
    params_for = params if callable(params) else (lambda number: params)
    if graph is None and job is None:
        graph = build_graph(**params_for(1))  # bad arguments fail now, not at the first fire time
    if storage_options is None and not callable(params):
        storage_options = params.get("storage_options")
    if client is None and cluster is None and scheduler is None:
        client = find_client()
    stop = stop or threading.Event()
    sleep = sleep or (lambda seconds: wait_for(stop, seconds))
    runs: collections.deque[ScheduledRun] = collections.deque(maxlen=keep)
    number = 0
    due = clock() if plan is None else plan.first(clock())
    if plan is not None:
        logger.info("Schedule %s; first run at %s", plan, iso(due))
    recycle = read_setting("schedule.recycle-every") if cluster is not None else None
    started = contextlib.ExitStack()  # the cluster of *cluster*, while it is up
    with started, posts_beside(stop) as sender:
        while not stop.is_set():
            wait = due - clock()
            if wait > 0 and on_wait is not None:
                on_wait(number + 1, due)
            if wait > 0 and sleep(wait) is True or stop.is_set():
                break
            number += 1
            if cluster is not None and client is None:
                client = started.enter_context(cluster())
            logger.info("Run %d starting", number)
            began = clock()
            done = [run_once(params_for(number), number=number, client=client, scheduler=scheduler, stop=stop,
                             clock=clock, scheduled=due, graph=graph if number == 1 else None, progress=progress)] \
                if job is None else job(number, client=client, scheduler=scheduler, stop=stop, scheduled=due)
            number -= not done  # nothing new to run: no run
            for run in done:
                if run.ok:
                    logger.info("Run %d succeeded in %.2f s", number, run.duration)
                else:
                    logger.info("Run %d %s: %s", number, "cancelled" if run.cancelled else "failed", run.message)
                report_run(run, notify=notify, history=history, storage_options=storage_options, sender=sender)
                runs.append(run)
                if on_result is not None:
                    on_result(run)
            if plan is None or max_runs is not None and number >= max_runs or stop.is_set():
                break
            due, now = plan.after(due), clock()
            if due < now:
                logger.warning("Run %d took %.1f s, past the next fire time of the schedule (%s); run %d starts "
                               "now, %.1f s late", number, now - began, plan, number + 1, now - due)
                due = now
            if cluster is not None and client is not None and (due - now > idle_limit or recycle and
                                                               number % recycle == 0):
                logger.info("Closing the cluster: %s", f"the next run is {due - now:.0f} s away" if due - now >
                            idle_limit else f"a new one every {recycle} runs (daskgif.schedule.recycle-every)")
                started.close()
                client = None
    if stop.is_set():
        logger.info("Schedule stopped after %d run(s)", number)
    return list(runs)
