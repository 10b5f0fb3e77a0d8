"""A live runs page inside the Dask dashboard: ``http://<dashboard>/daskgif``.

A scheduler preload module.  Start a scheduler with it and the scheduler itself
serves the page, next to its own dashboard::

    dask scheduler --preload daskgif.dashboard
    LocalCluster(scheduler_kwargs={"preload": ["daskgif.dashboard"]})

:func:`dask_setup` registers a :class:`RunsPlugin` whose ``log_event`` hook reads
the ``"daskgif"`` messages the workers send (see :mod:`daskgif.core.events`) into a
bounded :class:`Runs` model, and adds three read-only routes to the scheduler's
HTTP server: the page, its script and its JSON (``/daskgif/api/runs.json``,
``/daskgif/api/runs/<run>.json``).  Nothing polls the scheduler from inside;
the page asks the JSON endpoint about once a second while it is open.

Bounds (read from ``dask.config`` when the scheduler starts):
``daskgif.dashboard.max-runs`` runs (default 20; the oldest finished run goes
first), and ``daskgif.dashboard.max-frame-records`` frame records per run
(default 10000).  Plain successes are counted, never kept one by one, so a run
of any frame count costs a few kilobytes unless its frames fail.

The page only reads.  What it shows was masked by the sender and is masked
again here (:func:`daskgif.redact.scrub`); the JSON is ``application/json``,
and the page's script builds its DOM with ``textContent`` only.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from string import Template
from typing import Any

import dask.config
from distributed.diagnostics.plugin import SchedulerPlugin

import daskgif.config  # noqa: F401 - registers daskgif.yaml's defaults in this (the scheduler's) process
from daskgif.pipeline.steps import STEPS
from daskgif.redact import scrub
from daskgif.core.state import FAILED, RUNNING, SUCCESS

__all__ = ["Runs", "Run", "RunsPlugin", "dask_setup", "page_link", "PLUGIN_NAME", "PAGE"]

logger = logging.getLogger(__name__)

PLUGIN_NAME = "daskgif-dashboard"
#: The page's path below the dashboard's prefix.
PAGE = "daskgif"
#: The steps of a daskgif pipeline, in order: shown before they start.
PIPELINE = tuple(step.name for step in STEPS)
MESSAGE_CHARS = 1000
#: The most frame records one detail answer carries (the model may keep more; the page says so).
RECORDS_SHOWN = 1000
#: The most ranges one frame grid has (frames past them are left out of the grid, not of the counts).
GRID_LIMIT = 2000
HERE = Path(__file__).parent


def _bound(name: str, default: int) -> int:
    value = dask.config.get(f"daskgif.dashboard.{name}", default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"daskgif.dashboard.{name} must be a positive integer, got {value!r}")
    return value


def _text(value: Any) -> str:
    """A message as short, masked text."""
    text = scrub(str(value or ""))
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


class Run:
    """What the scheduler has seen of one run: its steps, its frame counts and its notable frames.

    Frame records are kept as tuples ``(state, attempts, start, end, message)``
    by map index, at most *max_records* of them; repeated messages are stored
    once.

    >>> run = Run("abc", max_records=1)
    >>> run.add({"kind": "map", "name": "write-frame", "total": 3})
    >>> run.add({"kind": "frames", "counts": {"Success": 1, "Failed": 2}, "records": [
    ...     {"index": 1, "state": "Failed", "attempts": 3, "message": "OSError: disk full"},
    ...     {"index": 2, "state": "Failed", "attempts": 3, "message": "OSError: disk full"}]})
    >>> run.counts, sorted(run.records), run.dropped
    ({'Success': 1, 'Failed': 2}, [1], {'Failed': 1})
    """

    def __init__(self, run: str, max_records: int = 10000):
        self.run = run
        self.max_records = max_records
        self.state = RUNNING
        self.start: float | None = None
        self.end: float | None = None
        self.seen = time.time()
        self.parameters: dict = {}
        self.out: str | None = None
        self.message = ""
        self.size: int | None = None
        self.steps: dict[str, dict] = {}
        self.total: int | None = None
        self.counts: dict[str, int] = {}
        self.busy = 0.0
        self.records: dict[int, tuple] = {}
        self.dropped: dict[str, int] = {}
        self._texts: dict[str, str] = {}
        self.version = 0
        self._cache: tuple[int, str] | None = None

    @property
    def finished(self) -> bool:
        return self.state in (SUCCESS, FAILED)

    def add(self, msg: Mapping[str, Any]) -> None:
        """Take one message of :mod:`daskgif.core.events` into account."""
        self.version += 1
        kind = msg.get("kind")
        stamp = msg.get("time")
        if kind == "run":
            if msg.get("state") == RUNNING:
                self.start = stamp if self.start is None else self.start
                self.parameters = dict(msg.get("parameters") or {})
                self.out = msg.get("out", self.out)
            else:
                self.state, self.end = msg.get("state", self.state), stamp
                self.message = _text(msg.get("message")) or self.message
                self.size = msg.get("size", self.size)
                if self.start is None:
                    self.start = min((s["start"] for s in self.steps.values() if s.get("start")), default=stamp)
        elif kind == "step":
            name = str(msg.get("name"))
            self.steps[name] = {key: msg.get(key) for key in ("state", "attempts", "start", "end")}
            self.steps[name]["message"] = self._intern(msg.get("message"))
            if self.start is None:
                self.start = msg.get("start")
        elif kind == "map":
            self.total = msg.get("total")
        elif kind == "frames":
            for state, n in (msg.get("counts") or {}).items():
                self.counts[state] = self.counts.get(state, 0) + n
            self.busy += msg.get("busy") or 0.0
            for record in msg.get("records") or ():
                self._keep(record)

    def _keep(self, record: Mapping[str, Any]) -> None:
        index, state = record.get("index"), record.get("state")
        if not isinstance(index, int):
            return
        if index not in self.records and len(self.records) >= self.max_records:
            self.dropped[state] = self.dropped.get(state, 0) + 1
            return
        self.records[index] = (state, record.get("attempts") or 0, record.get("start"), record.get("end"),
                               self._intern(record.get("message")))

    def _intern(self, message: Any) -> str:
        text = _text(message)
        return self._texts.setdefault(text, text) if len(self._texts) < 4 * self.max_records else text

    def summary(self) -> dict:
        """The run in one JSON-able line, for the runs table (``duration`` once it has ended)."""
        done = sum(self.counts.values())
        return scrub({
            "run": self.run, "state": self.state, "start": self.start, "end": self.end,
            "duration": None if self.start is None or self.end is None else self.end - self.start,
            "parameters": self.parameters, "out": self.out, "message": self.message, "size": self.size,
            "frames": {"total": self.total, "done": done, "counts": dict(self.counts)},
        })

    def detail(self, shown: int = RECORDS_SHOWN) -> dict:
        """The run with its steps, its frame grid (as ranges) and its first *shown* frame records."""
        records = [{"index": i, "state": s, "attempts": a, "start": t0, "end": t1, "message": m,
                    "duration": None if t0 is None or t1 is None else t1 - t0}
                   for i, (s, a, t0, t1, m) in sorted(self.records.items())[:shown]]
        grid = list(self.grid())
        return scrub({**self.summary(), "steps": list(self._steps()), "grid": grid,
                      "grid_truncated": len(grid) >= GRID_LIMIT, "records": records, "records_kept": len(self.records), "dropped": dict(self.dropped),
                      "busy": self.busy})

    def detail_json(self) -> str:
        """:meth:`detail` as JSON text, built again only after a new message (the page asks every second)."""
        if self._cache is None or self._cache[0] != self.version:
            self._cache = (self.version, json.dumps(self.detail(), allow_nan=False, default=str))
        return self._cache[1]

    def _steps(self) -> Iterator[dict]:
        names = list(self.steps)
        if any(name in PIPELINE for name in names):
            names = [*PIPELINE, *(name for name in names if name not in PIPELINE)]
        for name in names:
            step = self.steps.get(name) or {"state": "Not run" if self.finished else "Pending", "attempts": 0, "start": None, "end": None,
                                            "message": ""}
            start, end = step.get("start"), step.get("end")
            yield {"name": name, **step, "duration": None if start is None or end is None else end - start}

    def gap_state(self) -> str:
        """What the frames without a record are: plain successes once all are counted, else not known yet."""
        if self.total is None:
            return "Pending"
        gaps = self.total - len(self.records)
        plain = self.counts.get(SUCCESS, 0) - sum(1 for r in self.records.values() if r[0] == SUCCESS)
        dropped = sum(self.dropped.values())
        if plain + dropped >= gaps:
            return "Unlisted" if dropped else SUCCESS
        return "Not run" if self.finished else "Pending"

    def grid(self, limit: int = GRID_LIMIT) -> Iterator[dict]:
        """Consecutive frames of the same look as ranges: ``first``, ``last``, ``count``, ``state``, ...

        Frames without a record take :meth:`gap_state`; at most *limit* ranges.

        >>> run = Run("abc")
        >>> for msg in [{"kind": "map", "total": 5}, {"kind": "frames", "counts": {"Success": 4, "Skipped": 1},
        ...             "records": [{"index": 2, "state": "Skipped", "attempts": 1, "message": "bad"}]}]:
        ...     run.add(msg)
        >>> [(g["first"], g["last"], g["state"]) for g in run.grid()]
        [(0, 1, 'Success'), (2, 2, 'Skipped'), (3, 4, 'Success')]
        """
        gap = (self.gap_state(), False, "")
        total = self.total if self.total is not None else (max(self.records) + 1 if self.records else 0)
        current: list | None = None  # [first, last, look]
        n = 0
        for first, last, look in self._pieces(total, gap):
            if current is not None and current[2] == look and current[1] == first - 1:
                current[1] = last
                continue
            if current is not None:
                yield _segment(*current)
                n += 1
                if n >= limit:
                    return
            current = [first, last, look]
        if current is not None:
            yield _segment(*current)

    def _pieces(self, total: int, gap: tuple) -> Iterator[tuple[int, int, tuple]]:
        previous = -1
        for index in sorted(i for i in self.records if i < total):
            if index > previous + 1:
                yield previous + 1, index - 1, gap
            state, attempts, _, _, message = self.records[index]
            yield index, index, (state, attempts > 1, message)
            previous = index
        if previous + 1 < total:
            yield previous + 1, total - 1, gap


def _segment(first: int, last: int, look: tuple) -> dict:
    state, retried, message = look
    return {"first": first, "last": last, "count": last - first + 1, "state": state, "retried": retried,
            "message": message}


class Runs:
    """The runs a scheduler has seen, newest last, at most *max_runs* of them.

    When a new run would exceed the bound, the oldest finished run goes (or the
    oldest run, when none has finished).  A message for a run that was dropped
    does not bring it back.

    >>> runs = Runs(max_runs=2)
    >>> for run in ("a", "b", "c"):
    ...     runs.add({"kind": "run", "run": run, "state": "Running", "time": 0.0, "parameters": {}})
    >>> list(runs.runs)
    ['b', 'c']
    >>> runs.add({"kind": "step", "run": "a", "name": "fetch", "state": "Success"})
    >>> list(runs.runs)
    ['b', 'c']
    """

    def __init__(self, max_runs: int = 20, max_records: int = 10000):
        self.max_runs = max_runs
        self.max_records = max_records
        self.runs: OrderedDict[str, Run] = OrderedDict()
        self._dropped: deque[str] = deque(maxlen=10 * max_runs)
        self.messages = 0

    def add(self, msg: Any) -> None:
        """Take one ``"daskgif"`` message into account; a malformed one is ignored."""
        if not isinstance(msg, Mapping) or not isinstance(msg.get("run"), str):
            return
        self.messages += 1
        token = msg["run"]
        run = self.runs.get(token)
        if run is None:
            if token in self._dropped:
                return
            run = self.runs[token] = Run(token, self.max_records)
            self._evict()
        run.add(msg)

    def _evict(self) -> None:
        while len(self.runs) > self.max_runs:
            victim = next((token for token, run in self.runs.items() if run.finished), next(iter(self.runs)))
            del self.runs[victim]
            self._dropped.append(victim)

    def to_dict(self) -> dict:
        """Every run's summary, newest first, and the bounds."""
        now = time.time()
        return {"now": now, "max_runs": self.max_runs, "max_frame_records": self.max_records,
                "runs": [run.summary() for run in reversed(self.runs.values())]}


class RunsPlugin(SchedulerPlugin):
    """A scheduler plugin that reads the ``"daskgif"`` events into a :class:`Runs` model.

    ``log_event`` is called on the scheduler's event loop for every event logged there.
    """

    name = PLUGIN_NAME

    def __init__(self, max_runs: int | None = None, max_records: int | None = None):
        self.runs = Runs(_bound("max-runs", 20) if max_runs is None else max_runs,
                         _bound("max-frame-records", 10000) if max_records is None else max_records)
        self.path: str | None = None  # the page's path, once served

    def log_event(self, topic: str, msg: Any) -> None:
        if topic != "daskgif":
            return
        try:
            self.runs.add(msg)
        except Exception:  # a bad message must never disturb the scheduler
            logger.warning("daskgif runs page ignored a message it could not read", exc_info=True)


# -- the HTTP side ----------------------------------------------------------------------------------


def _handlers() -> dict[str, type]:
    from tornado import web

    class Base(web.RequestHandler):
        def initialize(self, plugin: RunsPlugin, base: str) -> None:
            self.plugin, self.base = plugin, base

        def set_default_headers(self) -> None:
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Cache-Control", "no-store")
            self.set_header("Referrer-Policy", "no-referrer")

        def send_json(self, data: Any) -> None:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps(data, allow_nan=False, default=str))

    class PageHandler(Base):
        def get(self) -> None:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Content-Security-Policy", "default-src 'none'; script-src 'self'; "
                            "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; "
                            "form-action 'none'")
            self.finish(_page().substitute(base=html.escape(self.base, quote=True)))

    class ScriptHandler(Base):
        def get(self) -> None:
            self.set_header("Content-Type", "text/javascript; charset=utf-8")
            self.finish((HERE / "dashboard.js").read_bytes())

    class RunsHandler(Base):
        def get(self) -> None:
            self.send_json(self.plugin.runs.to_dict())

    class RunHandler(Base):
        def get(self, token: str) -> None:
            run = self.plugin.runs.runs.get(token)
            if run is None:
                self.set_status(404)
                self.send_json({"error": "no such run (finished runs are dropped past daskgif.dashboard.max-runs)"})
                return
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish('{"now": %r, %s' % (time.time(), run.detail_json()[1:]))

    return {"page": PageHandler, "script": ScriptHandler, "runs": RunsHandler, "run": RunHandler}


def _page() -> Template:
    return Template((HERE / "dashboard.html").read_text(encoding="utf-8"))


def dashboard_prefix(scheduler: Any) -> str | None:
    """The dashboard's path prefix (``"/"`` by default), or ``None`` when the scheduler shows no dashboard.

    distributed always runs an HTTP server (health, metrics); the dashboard is
    on when its Bokeh application (or the page asking to install Bokeh) is there.
    Its ``--dashboard-prefix`` is not kept on the scheduler, so it is read off
    the route of ``/health``, which carries it.
    """
    app = getattr(scheduler, "http_application", None)
    if app is None:
        return None
    rules = list(_rules(app))
    shown = bool(getattr(app, "applications", None)) or any(
        getattr(target, "__name__", "") == "MissingBokeh" for _, target in rules)
    if not shown:
        return None
    for pattern, target in rules:
        if getattr(target, "__name__", "") == "HealthHandler" and pattern.endswith("health$"):
            return pattern[: -len("health$")] or "/"
    return "/"


def _rules(app: Any) -> Iterator[tuple[str, Any]]:
    import tornado.routing

    stack = [app.default_router, app.wildcard_router]
    while stack:
        router = stack.pop()
        for rule in getattr(router, "rules", ()):
            if isinstance(rule.target, tornado.routing.RuleRouter):
                stack.append(rule.target)
            elif isinstance(rule.matcher, tornado.routing.PathMatches):
                yield rule.matcher.regex.pattern, rule.target


def add_routes(scheduler: Any, plugin: RunsPlugin) -> str | None:
    """Serve the runs page on *scheduler*'s dashboard; return its path, or ``None`` without a dashboard."""
    prefix = dashboard_prefix(scheduler)
    if prefix is None:
        return None
    base = prefix.rstrip("/") + "/" + PAGE
    handlers = _handlers()
    kwargs = {"plugin": plugin, "base": base}
    at = re.escape(base)
    scheduler.http_application.add_handlers(r".*", [
        (rf"{at}/?", handlers["page"], kwargs),
        (rf"{at}/runs\.js", handlers["script"], kwargs),
        (rf"{at}/api/runs\.json", handlers["runs"], kwargs),
        (rf"{at}/api/runs/([0-9A-Za-z_-]{{1,100}})\.json", handlers["run"], kwargs),
    ])
    return base


def dask_setup(scheduler: Any) -> None:
    """Preload hook: collect the runs on *scheduler* and serve their page on its dashboard.

    Events the scheduler kept before (when loaded late) are read first.
    """
    if PLUGIN_NAME in scheduler.plugins:
        return
    plugin = RunsPlugin()
    for _, msg in scheduler.get_events("daskgif"):
        plugin.runs.add(msg)
    scheduler.add_plugin(plugin, name=PLUGIN_NAME)
    plugin.path = add_routes(scheduler, plugin)
    logger.info("daskgif runs page %s", "at " + plugin.path if plugin.path else "not served: no dashboard")


def page_path(dask_scheduler: Any = None) -> str | None:
    """On the scheduler: the runs page's path, or ``None`` when it is not served."""
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME) if dask_scheduler is not None else None
    return getattr(plugin, "path", None)


def page_link(client: Any) -> str | None:
    """The runs page's URL on *client*'s scheduler, or ``None`` when the scheduler does not serve it.

    Built from ``client.dashboard_link`` (so ``distributed.dashboard.link``
    templates and proxies apply): its ``status`` page becomes ``daskgif``,
    below the dashboard's prefix.
    """
    try:
        path = client.run_on_scheduler(page_path)
        link = client.dashboard_link
    except Exception:  # a scheduler without daskgif, or gone: no page
        logger.debug("no daskgif runs page on %r", client, exc_info=True)
        return None
    if not path or not link:
        return None
    from urllib.parse import urlsplit, urlunsplit

    # distributed's link names the status page but leaves out --dashboard-prefix: put it back
    prefix = path[: -len(PAGE)]
    scheme, netloc, link_path, *_ = urlsplit(link)
    if link_path.rstrip("/").endswith("/status"):
        head = link_path.rstrip("/")[: -len("status")]
        return urlunsplit((scheme, netloc, (head if head.endswith(prefix) else head + prefix.lstrip("/")) + PAGE,
                           "", ""))
    return urlunsplit((scheme, netloc, path, "", ""))
