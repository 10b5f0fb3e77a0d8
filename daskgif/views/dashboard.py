"""A live runs page inside the Dask dashboard: ``http://<dashboard>/daskgif``.

A scheduler preload module.  Start a scheduler with it and the scheduler itself
serves the page, next to its own dashboard::

    dask scheduler --preload daskgif.dashboard
    LocalCluster(scheduler_kwargs={"preload": ["daskgif.dashboard"]})

:func:`dask_setup` registers a :class:`RunsPlugin` whose ``log_event`` hook reads
the ``"daskgif"`` messages the workers send (see :mod:`daskgif.core.events`) into a
bounded :class:`~daskgif.views.runs.Runs` model, and adds read-only routes to the
scheduler's HTTP server: the page, its script and its JSON (``/daskgif/api/runs.json``,
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
from collections.abc import Iterator
from pathlib import Path
from string import Template
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

import daskgif.config  # noqa: F401 - registers daskgif.yaml's defaults in this (the scheduler's) process
from daskgif.views.runs import Runs

__all__ = ["RunsPlugin", "dask_setup", "page_link", "PLUGIN_NAME", "PAGE"]

logger = logging.getLogger(__name__)

PLUGIN_NAME = "daskgif-dashboard"
#: The page's path below the dashboard's prefix.
PAGE = "daskgif"
HERE = Path(__file__).parent


def _bound(name: str) -> int:
    from daskgif.pipeline.settings import read_setting

    return read_setting(f"dashboard.{name}")


#: Scheduler task states of a task still to run or running.
ACTIVE = frozenset({"waiting", "queued", "no-worker", "processing"})
#: The stimuli (``stimulus_id`` prefixes) of the scheduler letting go of tasks that a client no longer wants.
STOPS = ("cancel-", "remove-client-", "client-releases-keys-")


class RunsPlugin(SchedulerPlugin):
    """A scheduler plugin that reads the ``"daskgif"`` events into a :class:`~daskgif.views.runs.Runs` model.

    ``log_event`` is called on the scheduler's event loop for every event logged
    there; ``transition`` for every task's change of state.  A run's tasks are
    keyed ``<name>-<run token>``: when the scheduler lets go of them before the
    run ended because a client cancelled them (``Client.cancel``, ``daskgif``
    stopping a run), released them (a future dropped, a client closed) or went
    away, the run is marked ``Cancelled``, saying which.  Every other transition
    costs one string comparison.
    """

    name = PLUGIN_NAME

    def __init__(self, max_runs: int | None = None, max_records: int | None = None):
        self.runs = Runs(_bound("max-runs") if max_runs is None else max_runs,
                         _bound("max-frame-records") if max_records is None else max_records)
        self.path: str | None = None  # the page's path, once served
        self._stopper: dict[str, str] = {}  # the last client that cancelled, and the last gone

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == "daskgif":
            try:
                self.runs.add(msg)
            except Exception:  # a bug here must never disturb the scheduler
                logger.exception("daskgif runs page failed on a message")
        elif isinstance(msg, dict) and msg.get("action") in ("cancel", "remove-client") and topic != "all":
            # The scheduler logs these under the client's id just before letting go of its tasks.
            self._stopper[msg["action"]] = topic

    def transition(self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str = "", **kwargs: Any) -> None:
        if not stimulus_id.startswith(STOPS) or start not in ACTIVE or not isinstance(key, str):
            return  # only a task still to run, or running, stops a run: a finished one is let go of any time
        if stimulus_id.startswith("cancel-"):
            reason = f"cancelled by client {self._stopper.get('cancel', '(unknown)')}"
        elif stimulus_id.startswith("remove-client-"):
            reason = f"client {self._stopper.get('remove-client', '(unknown)')} went away"
        else:
            reason = "released by its client before it ended"
        self.runs.stop(key.rpartition("-")[2], reason)


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
