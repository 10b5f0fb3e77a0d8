"""A live runs page inside the Dask dashboard, ``http://<dashboard>/daskgif``, served by a scheduler preload::

    dask scheduler --preload daskgif.dashboard

:func:`dask_setup` adds a :class:`RunsPlugin`, which reads the runs' ``"daskgif"`` events, and read-only
routes: the page, its script and its JSON.  What it shows is masked; the script sets ``textContent`` only.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urljoin, urlsplit

from distributed.diagnostics.plugin import SchedulerPlugin
from tornado import web

from daskgif import config  # also registers daskgif.yaml's defaults in this (the scheduler's) process
from daskgif.core import events
from daskgif.views.runs import Runs

__all__ = ["RunsPlugin", "dask_setup", "page_link", "PLUGIN_NAME", "PAGE"]

logger = logging.getLogger(__name__)

PLUGIN_NAME = "daskgif-dashboard"
#: The page's path below the dashboard's prefix.
PAGE = "daskgif"
HERE = Path(__file__).parent
#: Scheduler task states of a task still to run or running.
ACTIVE = frozenset({"waiting", "queued", "no-worker", "processing"})
#: The stimuli (``stimulus_id`` prefixes) of the scheduler letting go of tasks that a client no longer wants.
STOPS = ("cancel-", "remove-client-", "client-releases-keys-")
HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
           "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'"}
JSON = "application/json; charset=utf-8"


def bound(name: str) -> int:
    """``daskgif.dashboard.<name>``, a positive integer (checked here: reading settings would load the pipeline)."""
    key = f"dashboard.{name}"
    return config.check(key, config.get(key), lambda n: isinstance(n, int) and not isinstance(n, bool) and n > 0,
                        "a positive integer")


class RunsPlugin(SchedulerPlugin):
    """A scheduler plugin that reads the ``"daskgif"`` events into a :class:`~daskgif.views.runs.Runs` model.

    A run whose task (``<name>-<run token>``) a client let go of before it ended is marked ``Cancelled``.
    """

    name = PLUGIN_NAME

    def __init__(self, max_runs: int | None = None, max_records: int | None = None):
        self.runs = Runs(bound("max-runs") if max_runs is None else max_runs,
                         bound("max-frame-records") if max_records is None else max_records)
        self.path: str | None = None  # the page's path, once served
        self._stopper: dict[str, str] = {}  # the last client that cancelled, and the last gone

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == events.TOPIC:
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


def dashboard_prefix(scheduler: Any) -> str | None:
    """The dashboard's path prefix (``"/"`` by default), or ``None`` when the scheduler shows no dashboard."""
    app = scheduler.http_application  # distributed's RoutingApplication, with the routes of its modules
    routes = {getattr(rule.target, "__name__", ""): rule.matcher for rule in app.wildcard_router.rules}
    if not app.applications and "MissingBokeh" not in routes:
        return None
    health = getattr(routes.get("HealthHandler"), "regex", None)  # --dashboard-prefix is kept only in routes
    return health.pattern[: -len("health$")] or "/" if health is not None else "/"


class RunsPageHandler(web.RequestHandler):
    """One route of the runs page: its *answer* gives the status, content type and body."""

    def initialize(self, answer: Callable[..., tuple[int, str, str | bytes]]) -> None:
        self.answer = answer

    def set_default_headers(self) -> None:
        for name, value in HEADERS.items():
            self.set_header(name, value)

    def get(self, *args: str) -> None:
        status, kind, body = self.answer(*args)
        self.set_status(status)
        self.set_header("Content-Type", kind)
        self.finish(body)


def add_routes(scheduler: Any, plugin: RunsPlugin) -> str | None:
    """Serve the runs page on *scheduler*'s dashboard; return its path, or ``None`` without a dashboard."""
    prefix = dashboard_prefix(scheduler)
    if prefix is None:
        return None
    base = prefix.rstrip("/") + "/" + PAGE
    page = Template((HERE / "dashboard.html").read_text(encoding="utf-8")).substitute(base=html.escape(base))

    def run(token: str) -> tuple[int, str, str]:
        found = plugin.runs.runs.get(token)
        if found is None:
            return 404, JSON, '{"error": "no such run (finished runs are dropped past daskgif.dashboard.max-runs)"}'
        return 200, JSON, '{"now": %r, %s' % (time.time(), found.detail_json()[1:])

    at = re.escape(base)
    answers = {
        rf"{at}/?": lambda: (200, "text/html; charset=utf-8", page),
        rf"{at}/runs\.js": lambda: (200, "text/javascript; charset=utf-8", (HERE / "dashboard.js").read_bytes()),
        rf"{at}/api/runs\.json": lambda: (200, JSON, json.dumps(plugin.runs.to_dict(), allow_nan=False, default=str)),
        rf"{at}/api/runs/([0-9A-Za-z_-]{{1,100}})\.json": run,
    }
    scheduler.http_application.add_handlers(r".*", [(path, RunsPageHandler, {"answer": a})
                                                    for path, a in answers.items()])
    return base


def dask_setup(scheduler: Any) -> None:
    """Preload hook: collect the runs on *scheduler* (also those it kept before) and serve their page."""
    if PLUGIN_NAME in scheduler.plugins:
        return
    plugin = RunsPlugin()
    for _, msg in scheduler.get_events(events.TOPIC):
        plugin.runs.add(msg)
    scheduler.add_plugin(plugin, name=PLUGIN_NAME)
    plugin.path = add_routes(scheduler, plugin)
    logger.info("daskgif runs page %s", "at " + plugin.path if plugin.path else "not served: no dashboard")


def page_path(dask_scheduler: Any) -> str | None:
    """On the scheduler: the runs page's path, or ``None`` when it is not served."""
    return getattr(dask_scheduler.plugins.get(PLUGIN_NAME), "path", None)


def page_link(client: Any) -> str | None:
    """The runs page's URL on *client*'s scheduler (from ``client.dashboard_link``), or ``None`` if it has none."""
    try:
        path = client.run_on_scheduler(page_path)
        link = client.dashboard_link
    except Exception:  # a scheduler without daskgif, or gone: no page
        logger.debug("no daskgif runs page on %r", client, exc_info=True)
        return None
    if not path or not link:
        return None
    if not urlsplit(link).path.rstrip("/").endswith("/status"):
        return urljoin(link, path)
    # distributed's link names the status page but leaves out --dashboard-prefix: put it back
    head, prefix = urljoin(link.rstrip("/"), "."), path[: -len(PAGE)]
    return (head if head.endswith(prefix) else head + prefix.lstrip("/")) + PAGE
