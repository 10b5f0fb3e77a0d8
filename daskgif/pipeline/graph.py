"""The daskgif pipeline as a lazy Dask graph, built from one description of its steps.

:data:`STEPS` says what the pipeline is: ``fetch -> split -> map-frames -> combine``.
:func:`build_graph` wires one :class:`~daskgif.core.task.Task` per step, in that order,
each keyed ``<step>-<token>``, then ``finish-<token>``, which turns the last
outcome into a :class:`~daskgif.pipeline.result.Result`::

    fetch-<token> -> split-<token> -> map-frames-<token> -> combine-<token> -> finish-<token>
                                           |
                                           +-> write-frame-<i>-<token>  (launched at run time)

The result's states and the pipeline picture (:mod:`daskgif.views.pictures`) come from
the same description.  Frame bytes never travel through the graph: ``split``
returns small spans, each ``write-frame`` batch reads its own spans from the data
file, and ``combine`` streams the frames into the output.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dask
from dask.delayed import Delayed

from daskgif import storage
from daskgif.core import events
from daskgif.core.state import State
from daskgif.errors import RunFailed
from daskgif.pipeline.parameters import declared
from daskgif.pipeline.settings import LOCAL_SCHEDULERS, Params
from daskgif.pipeline.steps import STEPS, finish
from daskgif.redact import safe_parameters, scrub

__all__ = ["build_graph", "Pipeline"]

logger = logging.getLogger(__name__)


class Pipeline(Delayed):
    """The lazy pipeline :func:`build_graph` returns: a :class:`dask.delayed.Delayed` whose ``compute``
    honours the local scheduler it is given, holds the data file's lock, reports states to ``on_state``
    hooks, and logs the run's end.

    ``compute(scheduler="sync")`` (or ``"threads"``, with ``num_workers``) also
    runs the per-frame tasks that ``map-frames`` launches on that scheduler: the
    arguments are set in ``dask.config`` for the duration of the call.
    """

    __slots__ = ("params", "on_state")

    def __init__(self, delayed: Delayed, params: Params, on_state: Sequence[Callable[[State], None]] = ()):
        super().__init__(delayed.key, delayed.dask)
        self.params = params
        self.on_state = tuple(on_state)

    @property
    def run(self) -> str:
        """The run's token: the suffix of its task keys and the ``run`` of its messages."""
        return self.params.run

    def compute(self, **kwargs: Any) -> Any:
        """Run the pipeline and return its :class:`~daskgif.pipeline.result.Result`; raise ``RunFailed`` if a task failed."""
        scheduler = kwargs.get("scheduler")
        settings = {"num_workers": kwargs["num_workers"]} if "num_workers" in kwargs else {}
        if isinstance(scheduler, str) and scheduler in LOCAL_SCHEDULERS:
            settings["scheduler"] = scheduler
        with running(self, cluster_client(scheduler)), dask.config.set(settings):
            return super().compute(**kwargs)

    def __reduce__(self) -> Any:
        return (Pipeline, (Delayed(self.key, self.dask), self.params, self.on_state))


@contextlib.contextmanager
def running(pipeline: Pipeline, client: Any = None) -> Iterator[None]:
    """Hold the data file's lock and feed the run's messages to its hooks while it runs.

    The lock (``<data_file>.lock``, see :func:`daskgif.storage.lock`) is held by the
    process that computes the graph, for the whole run: a second run on the same
    data file waits ``daskgif.lock-timeout`` seconds for it, then fails naming it.
    """
    p = pipeline.params
    with storage.lock(p.data_file, p.storage_options, owner=p.run, timeout=p.lock_timeout), watch(pipeline, client):
        yield


def cluster_client(scheduler: Any = None) -> Any:
    """The ``distributed.Client`` a compute with *scheduler* runs on, or ``None`` for a local scheduler."""
    if hasattr(scheduler, "subscribe_topic"):
        return scheduler
    configured = dask.config.get("scheduler", None)
    if scheduler is not None or configured not in (None, "dask.distributed", "distributed") \
            or "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


class watch:  # noqa: N801 - used as a context manager, like dask's own
    """Feed a run's messages to its ``on_state`` hooks while it runs; log its end.

    On a cluster, the messages arrive through :func:`daskgif.core.events.relay`; on
    leaving, it waits (briefly) for the run's last message, so every hook has
    been called when ``compute`` returns.
    """

    def __init__(self, pipeline: Pipeline, client: Any = None, wait: float = 5.0):
        self.pipeline, self.client, self.wait = pipeline, client, wait
        self.ended = threading.Event()

    def __enter__(self) -> watch:
        if self.client is not None:
            events.relay(self.client)
        self.unsubscribe = events.bus.subscribe(self.receive)
        return self

    def receive(self, msg: dict) -> None:
        if msg.get("run") != self.pipeline.run:
            return
        kind = msg.get("kind")
        if kind == "run" and msg["state"] != "Running":
            self.ended.set()
        hooks = self.pipeline.on_state
        if not hooks and not logger.isEnabledFor(logging.INFO):
            return
        if kind == "step":
            found = [State.from_dict(msg)]
        elif kind == "frames":
            found = [State.from_dict(record) for record in msg["records"]]
        else:
            found = []
        for state in found:
            logger.info("Task %r%s: %s%s", state.name, "" if state.index is None else f"[{state.index}]",
                        state.state, f" ({state.message})" if state.message else "")
            for hook in hooks:
                try:
                    hook(state)
                except Exception:
                    logger.exception("State hook %r failed on %s", hook, state)

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        if self.client is not None and (kind is None or issubclass(kind, RunFailed)):
            self.ended.wait(self.wait)
        self.unsubscribe()
        if kind is None:
            logger.info("Run SUCCESS: all reference tasks succeeded (%s)", self.pipeline.run)
        elif issubclass(kind, RunFailed):
            logger.info("Run FAILED: %s", error)


@declared
def build_graph(
    url: str | None = None,
    data_file: str = "image-data.img",
    out: str = "clip.gif",
    frames_dir: str | None = None,
    delimiter: bytes = b"\n\n\n\n",
    duration: int = 100,
    loop: int = 0,
    retries: int = 2,
    retry_delay: float = 10,
    force: bool = False,
    storage_options: dict | None = None,
    *,
    on_error: str | None = None,
    frames_per_task: int | str | None = None,
    on_state: Sequence[Callable[[State], None]] = (),
) -> Pipeline:
    """Build the image ETL pipeline as a lazy Dask graph; nothing is read or written.

    Parameters
    ----------
    {parameters}

    Returns
    -------
    Pipeline
        A :class:`dask.delayed.Delayed`: computing it runs the pipeline and
        returns a :class:`~daskgif.pipeline.result.Result`, or raises
        :class:`~daskgif.errors.RunFailed` naming the failed task.

    Examples
    --------
    >>> graph = build_graph(data_file="memory://doc/image-data.img", out="memory://doc/clip.gif")
    >>> result = graph.compute(scheduler="sync")
    >>> result.ok, len(result.frames), result.frames[0]
    (True, 32, 'memory://doc/frames/frame_00.gif')
    """
    # The arguments, by the names of the table of parameters; checked there, with dask.config read.
    p = Params.from_arguments(**locals())
    token = p.run
    announce = {"parameters": scrub(safe_parameters(p.arguments)), "out": scrub(out)}
    node = None
    for i, step in enumerate(STEPS):
        task = p.task(step.func, step.name, retried=step.retried, announce=announce if i == 0 else None,
                      skip_on_upstream_skip=step.skip_on_upstream_skip)
        node = task(node, p, dask_key_name=f"{step.name}-{token}")
    return Pipeline(dask.delayed(finish, pure=False)(node, p, dask_key_name=f"finish-{token}"), p, on_state)


