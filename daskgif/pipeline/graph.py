"""The daskgif pipeline as a lazy Dask graph, built from one description of its steps.

:data:`STEPS` says what the pipeline is: ``fetch -> split -> map-frames -> combine``.
:func:`build_graph` wires one :class:`~daskgif.core.task.Task` per step, in that order,
each keyed ``<step>-<token>``, then ``result-<token>``, which turns the last
outcome into a :class:`~daskgif.pipeline.result.Result`::

    fetch-<token> -> split-<token> -> map-frames-<token> -> combine-<token> -> result-<token>
                                           |
                                           +-> write-frame-<i>-<token>  (launched at run time)

The result's states and the pipeline picture (:mod:`daskgif.views.pictures`) come from
the same description.  Frame bytes never travel through the graph: ``split``
returns small spans, each ``write-frame`` batch reads its own spans from the data
file, and ``combine`` streams the frames into the output.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
from dask.delayed import Delayed

from daskgif.core import events
from daskgif.core.runtime import check_main_guard, find_client
from daskgif.core.state import State
from daskgif.pipeline import steps
from daskgif.pipeline.parameters import declared
from daskgif.pipeline.settings import Params
from daskgif.redact import safe_parameters, scrub

__all__ = ["build_graph", "make_pipeline", "Pipeline", "InputState"]

logger = logging.getLogger(__name__)


class Pipeline(Delayed):
    """The lazy pipeline :func:`build_graph` returns: a plain :class:`dask.delayed.Delayed`.

    Everything a run needs travels inside its own tasks: the lease on the data
    file, the states (as Dask events), the frames launched on the scheduler that
    runs the graph.  So ``g.compute()``, ``dask.compute(g1, g2)``,
    ``client.compute(g)``, ``client.persist(g)`` and ``g.persist()`` all run the
    same pipeline, with the same files, result, lease and events.

    While it lives, its ``on_state`` hooks receive the run's states wherever it
    is computed: a local scheduler's tasks publish in this process, a cluster's
    reach the client that computes the graph (subscribed when Dask asks for the
    graph).
    """

    __slots__ = ("params", "on_state", "listener")

    def __init__(self, delayed: Delayed, params: Params, on_state: Sequence[Callable[[State], None]] = ()):
        super().__init__(delayed.key, delayed.dask)
        self.params = params
        self.on_state = tuple(on_state)
        extra = {"batch": params.batch, "url": scrub(params.url)} if params.batch else None
        self.listener = StateListener(params.run, self.on_state, extra)
        weakref.finalize(self, events.bus.subscribe(self.listener))

    @property
    def run(self) -> str:
        """The run's token: the suffix of its task keys and the ``run`` of its messages."""
        return self.params.run

    def __dask_graph__(self) -> Any:
        check_main_guard()  # every way of computing asks for the graph first: a spawned child's re-import too
        client = find_client()
        if client is not None:  # every way of computing asks for the graph first, on the client
            events.relay(client)
        return super().__dask_graph__()

    def __reduce__(self) -> Any:
        return (Pipeline, (Delayed(self.key, self.dask), self.params, self.on_state))


@dataclass(frozen=True)
class InputState(State):
    """The :class:`State` that ``on_state`` hooks get from an input of a batch (:func:`daskgif.build_graphs`):
    with the batch's id and the input's URL (masked), to tell the inputs apart."""

    batch: str | None = None
    url: str | None = None


class StateListener:
    """Hand the states of run *run* to its ``on_state`` hooks, and log them (INFO) and the run's end.

    With *extra* (a batch's input), hooks get :class:`InputState` with these fields.
    """

    def __init__(self, run: str, hooks: Sequence[Callable[[State], None]] = (), extra: Mapping | None = None):
        self.run, self.hooks, self.extra = run, tuple(hooks), extra

    def __call__(self, msg: dict) -> None:
        if msg.get("run") != self.run:
            return
        kind = msg.get("kind")
        if kind == "run" and msg.get("state") != "Running":
            if msg.get("state") == "Success":
                logger.info("Run SUCCESS: all reference tasks succeeded (%s)", self.run)
            else:
                logger.info("Run FAILED: %s", msg.get("message"))
        if not self.hooks and not logger.isEnabledFor(logging.INFO):
            return
        if kind == "step":
            states = [State.from_dict(msg)]
        elif kind == "frames":
            states = [State.from_dict(record) for record in msg["records"]]
        else:
            return
        for state in states:
            state = InputState(**vars(state), **self.extra) if self.extra else state
            logger.info("Task %r%s: %s%s", state.name, "" if state.index is None else f"[{state.index}]",
                        state.state, f" ({state.message})" if state.message else "")
            for hook in self.hooks:
                try:
                    hook(state)
                except Exception:
                    logger.exception("State hook %r failed on %s", hook, state)


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
    return make_pipeline(Params.from_arguments(**locals()), on_state)


def make_pipeline(params: Params, on_state: Sequence[Callable[[State], None]] = ()) -> Pipeline:
    """The pipeline of the run settings *params*: :func:`build_graph`'s work once its arguments are checked."""
    token = params.run
    announce = {"parameters": scrub(safe_parameters(params.arguments)), "out": scrub(params.out),
                "steps": [step.name for step in steps.STEPS], **({"batch": params.batch} if params.batch else {})}
    nodes: dict[str, Any] = {}
    node = None
    for i, step in enumerate(steps.STEPS):
        task = step.task(params, announce if i == 0 else None)
        node = nodes[step.name] = task(node, params, dask_key_name=f"{step.name}-{token}")
    done = dask.delayed(steps.make_result, pure=False)(node, nodes["combine"], params, dask_key_name=f"result-{token}")
    return Pipeline(done, params, on_state)


