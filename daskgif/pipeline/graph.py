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
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dask
from dask.base import tokenize
from dask.delayed import Delayed

from daskgif import config, storage
from daskgif.core import events
from daskgif.core.state import State
from daskgif.pipeline import limits
from daskgif.pipeline.limits import check_timeouts
from daskgif.errors import RunFailed
from daskgif.pipeline.sample import sample_path
from daskgif.pipeline.settings import (
    LOCAL_SCHEDULERS,
    Params,
    _batch_size,
    _number,
    _positive,
    _positive_or_none,
    check_arguments,
    default_frames_dir,
)
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
    url : str, optional
        Where the image-data file comes from: any fsspec URL or path. ``None``
        means the sample shipped inside the package.
    data_file : str
        Where the fetched file is kept. If it exists, fetch is *Skipped* and the
        file is used as it is (unless ``force=True``).
    out : str
        The animated GIF to write.
    frames_dir : str, optional
        Folder for ``frame_00.gif``, ``frame_01.gif``, ...  Default: ``frames``
        next to *out*.
    delimiter : bytes
        What separates frames in the data file.
    duration : int
        Milliseconds per frame.
    loop : int
        How many times the animation plays; ``0`` loops forever.
    retries, retry_delay : int, float
        Attempts after the first, and seconds before the first retry, for the
        I/O tasks; only transient errors are retried (see :mod:`daskgif.core.retry`).
    force : bool
        Fetch again even when *data_file* exists.
    storage_options : dict, optional
        Passed to fsspec for every path.
    on_error : {"raise", "skip"}, optional
        What an unreadable frame does: fail the run, or be dropped and reported
        as *Skipped*. Default ``daskgif.on-error``.
    frames_per_task : int or "auto", optional
        How many frames one ``write-frame`` task writes. Default
        ``daskgif.frames-per-task``.
    on_state : sequence of callables, optional
        Called on the client with each step's :class:`~daskgif.core.state.State` as
        it changes, and with the state of each frame that was not a plain
        success, while ``compute()`` runs.

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
    on_error = config.check("on-error", config.get("on-error"), ("raise", "skip")) if on_error is None else on_error
    frames_per_task = config.check("frames-per-task", config.get("frames-per-task"), _batch_size,
                                   "'auto' or a positive integer") if frames_per_task is None else frames_per_task
    check_arguments(delimiter, duration, loop, retries, retry_delay, on_error, frames_per_task)
    url = sample_path() if url is None else url
    frames_dir = default_frames_dir(out) if frames_dir is None else frames_dir
    # Writes get unique keys: two builds with equal arguments are two runs.
    token = tokenize(url, data_file, out, frames_dir, delimiter, duration, loop, force, uuid.uuid4().hex)
    p = Params(
        url=url, data_file=data_file, out=out, frames_dir=frames_dir, delimiter=delimiter, duration=duration,
        loop=loop, force=force, storage_options=storage_options, on_error=on_error,
        frames_per_task=frames_per_task, retries=retries, retry_delay=retry_delay, run=token,
        chunk_size=config.get("chunk-size"), max_pixels=config.get("max-pixels"),
        fetch_timeout=config.get("fetch-timeout"), max_bytes=config.get("max-bytes"),
        allowed_protocols=tuple(config.get("allowed-protocols")),
        fetch_deadline=config.check("fetch-deadline", config.get("fetch-deadline", None), _positive_or_none,
                                    "a positive number of seconds or null"),
        check_remote=bool(config.get("fetch-check-remote", True)),
        validate=config.check("validate", config.get("validate"), ("decode", "structure")),
        lock_timeout=config.check("lock-timeout", config.get("lock-timeout"), _positive, "a positive number"),
        retry={"backoff": config.check("retry-backoff", config.get("retry-backoff"), _positive, "a positive number"),
               "max_delay": config.check("retry-max-delay", config.get("retry-max-delay"), _positive,
                                         "a positive number of seconds"),
               "jitter": config.check("retry-jitter", config.get("retry-jitter"),
                                      lambda v: _number(v) and 0 <= v <= 1, "a number from 0 to 1")},
        task_timeout=check_timeouts(config.get("task-timeout", None)),
        limits=limits.check_limits(config.get("limits", None)),
        resume=config.check("resume", config.get("resume", True), (True, False)),
    )
    announce = {"parameters": scrub(safe_parameters({"url": url, "data_file": data_file, "out": out,
                                                     "frames_dir": frames_dir, "duration": duration,
                                                     "loop": loop, "force": force})),
                "out": scrub(out)}
    node = None
    for i, step in enumerate(STEPS):
        task = p.task(step.func, step.name, retried=step.retried, announce=announce if i == 0 else None,
                      skip_on_upstream_skip=step.skip_on_upstream_skip)
        node = task(node, p, dask_key_name=f"{step.name}-{token}")
    return Pipeline(dask.delayed(finish, pure=False)(node, p, dask_key_name=f"finish-{token}"), p, on_state)


