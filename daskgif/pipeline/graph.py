"""The daskgif pipeline as a lazy Dask graph: one :class:`~daskgif.core.task.Task` per step of :data:`STEPS`,
each keyed ``<step>-<token>``; the last one's task also makes the :class:`~daskgif.pipeline.result.Result`::

    fetch-<token> -> split-<token> -> map-frames-<token> -> combine-<token>
                                           |
                                           +-> write-frame-<i>-<token>  (launched at run time)

:func:`build_graphs` makes one per input; computed together, each keeps its own lease, states and ``RunFailed``.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import string
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
from dask.delayed import Delayed

from daskgif import storage
from daskgif.core import events
from daskgif.core.runtime import check_main_guard
from daskgif.core.state import State
from daskgif.gif.split import DELIMITER
from daskgif.pipeline import steps
from daskgif.pipeline.parameters import declared
from daskgif.pipeline.sample import sample_path
from daskgif.pipeline.settings import Params
from daskgif.redact import safe_parameters, scrub

__all__ = ["build_graph", "build_graphs", "make_pipeline", "new_batch", "InputState", "Pipeline", "paths_of"]

logger = logging.getLogger(__name__)


class Pipeline(Delayed):
    """The lazy pipeline :func:`build_graph` returns: a plain :class:`dask.delayed.Delayed` whose tasks carry all a run
    needs, so ``g.compute()``, ``dask.compute(g1, g2)``, ``client.compute(g)`` and ``persist`` all run the same
    pipeline.  While it lives, its ``on_state`` hooks receive the run's states wherever it is computed.
    """

    __slots__ = ("params", "on_state", "listener")

    def __init__(self, delayed: Delayed, params: Params, on_state: Sequence[Callable[[State], None]] = ()):
        super().__init__(delayed.key, delayed.dask)
        self.params, self.on_state = params, tuple(on_state)
        extra = {"batch": params.batch, "url": scrub(params.url)} if params.batch else None
        self.listener = StateListener(params.run, self.on_state, extra)
        weakref.finalize(self, events.bus.subscribe(self.listener))

    @property
    def run(self) -> str:
        """The run's token: the suffix of its task keys and the ``run`` of its messages."""
        return self.params.run

    def __dask_graph__(self) -> Any:
        check_main_guard()  # every way of computing asks for the graph first: a spawned child's re-import too
        events.relay_all()
        return super().__dask_graph__()

    def __reduce__(self) -> Any:
        return (Pipeline, (Delayed(self.key, self.dask), self.params, self.on_state))


@dataclass(frozen=True)
class InputState(State):
    """The :class:`State` that ``on_state`` hooks get from an input of a batch (:func:`build_graphs`):
    with the batch's id and the input's URL (masked), to tell the inputs apart."""

    batch: str | None = None
    url: str | None = None


class StateListener:
    """Hand the states of run *run* to its ``on_state`` hooks (as :class:`InputState` with the fields of *extra*,
    a batch's input), and log them (INFO) and the run's end."""

    def __init__(self, run: str, hooks: Sequence[Callable[[State], None]] = (), extra: Mapping | None = None):
        self.run, self.hooks, self.extra = run, tuple(hooks), extra

    def __call__(self, msg: dict) -> None:
        if msg.get("run") != self.run:
            return
        kind, state = msg.get("kind"), msg.get("state")
        if kind == "run" and state == "Success":
            logger.info("Run SUCCESS: all reference tasks succeeded (%s)", self.run)
        elif kind == "run" and state != "Running":
            logger.info("Run FAILED: %s", msg.get("message"))
        if not (self.hooks or logger.isEnabledFor(logging.INFO)):
            return
        for found in map(State.from_dict, [msg] if kind == "step" else msg["records"] if kind == "frames" else []):
            found = InputState(**vars(found), **self.extra) if self.extra else found
            logger.info("Task %r%s: %s%s", found.name, "" if found.index is None else f"[{found.index}]",
                        found.state, f" ({found.message})" if found.message else "")
            for hook in self.hooks:
                try:
                    hook(found)
                except Exception:
                    logger.exception("State hook %r failed on %s", hook, found)


@declared
def build_graph(url: str | None = None, data_file: str = "image-data.img", out: str = "clip.gif",
                frames_dir: str | None = None, delimiter: bytes = DELIMITER, duration: int = 100, loop: int = 0,
                retries: int = 2, retry_delay: float = 10, force: bool = False, storage_options: dict | None = None,
                *, on_error: str | None = None, frames_per_task: int | str | None = None,
                on_state: Sequence[Callable[[State], None]] = ()) -> Pipeline:
    """Build the image ETL pipeline as a lazy Dask graph; nothing is read or written.

    Parameters
    ----------
    {parameters}

    Returns
    -------
    Pipeline
        A :class:`dask.delayed.Delayed`: computing it runs the pipeline and returns a
        :class:`~daskgif.pipeline.result.Result`, or raises :class:`~daskgif.errors.RunFailed`.

    Examples
    --------
    >>> graph = build_graph(data_file="memory://doc/image-data.img", out="memory://doc/clip.gif")
    >>> result = graph.compute(scheduler="sync")
    >>> result.ok, len(result.frames), result.frames[0]
    (True, 32, 'memory://doc/frames/frame_00.gif')
    """
    out, data_file, frames_dir = filled(url, out=out, data_file=data_file, frames_dir=frames_dir)
    return make_pipeline(Params.from_arguments(**locals()), on_state)  # checked by the table, dask.config read


def make_pipeline(params: Params, on_state: Sequence[Callable[[State], None]] = ()) -> Pipeline:
    """The pipeline of the run settings *params*: :func:`build_graph`'s work once its arguments are checked."""
    steps.writer_for(params.out)  # no writer for its suffix: refused at build, as a bad loop is
    token = params.run
    announce = {"parameters": scrub(safe_parameters(params.arguments)), "out": scrub(params.out),
                "steps": [step.name for step in steps.STEPS], **({"batch": params.batch} if params.batch else {})}
    node = combined = None
    for i, step in enumerate(steps.STEPS):
        # params bound, not passed: Dask walks every argument, every field of a dataclass (ms per build)
        run = functools.partial(step.task(params, announce if i == 0 else None).run, params=params)
        if step is not steps.STEPS[-1]:
            node = dask.delayed(run, pure=False)(node, dask_key_name=f"{step.name}-{token}")
        else:  # the last step ends the run in its own task (no hop to one more), from combine's output
            done = functools.partial(steps.finish, run, params=params)
            node = dask.delayed(done, pure=False)(node, combined, dask_key_name=f"{step.name}-{token}")
        combined = node if step.name == "combine" else combined
    return Pipeline(node, params, on_state)


#: Where each input's files go when several inputs do not say (``{suffix}``: the input's own).
DEFAULTS = {"out": "{name}.gif", "data_file": "data/{name}{suffix}", "frames_dir": "frames/{name}"}


def paths_of(urls: Sequence[str], **templates: str | None) -> list[dict[str, str]]:
    """Each input's ``out``, ``data_file`` and ``frames_dir`` from templates (``None``: :data:`DEFAULTS`), where
    ``{name}`` is its file name without the suffix or query, ``{suffix}`` the suffix; two inputs never share a path.

    >>> paths_of(["s3://b/x.img?v=2", "raw"], out="gifs/{name}.webp")
    [{'out': 'gifs/x.webp', 'data_file': 'data/x.img', 'frames_dir': 'frames/x'}, \
{'out': 'gifs/raw.webp', 'data_file': 'data/raw', 'frames_dir': 'frames/raw'}]
    """
    found: list[dict[str, str]] = []
    owner: dict[str, tuple[str, str, str]] = {}
    for url in urls:
        name = name_of(url)[0]
        paths = {key: fill(templates.get(key) or default, key, url) for key, default in DEFAULTS.items()}
        for key, path in paths.items():
            where = steps.place(path)
            if where in owner:
                other, other_key, other_name = owner[where]
                named = "{name}" in (templates.get(key) or DEFAULTS[key])
                fix = (f"both are named {name!r}: give the inputs distinct file names" if named and name == other_name
                       else f"put {{name}} in {key}")
                raise ValueError(f"inputs {other!r} and {url!r} would both write {other_key} {path!r}: {fix}")
            owner[where] = (url, key, name)
        found.append(paths)
    return found


def name_of(url: str) -> tuple[str, str]:
    """The ``{name}`` and ``{suffix}`` of input *url*: its file name without a query, split at the suffix.

    >>> name_of("s3://b/day-1.img?v=2"), name_of("raw/")
    (('day-1', '.img'), ('raw', ''))
    """
    return os.path.splitext(url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rpartition("/")[2])


def fill(template: str, key: str, url: str) -> str:
    """*template* (the parameter *key*) with the ``{name}`` and ``{suffix}`` of input *url* (:func:`name_of`);
    any other placeholder, an attribute or an index of one is a ``ValueError`` (``{{`` and ``}}`` are braces).

    >>> fill("gifs/{name}{{1}}.gif", "out", "s3://b/day-1.img")
    'gifs/day-1{1}.gif'
    >>> fill("{name.__class__}.gif", "out", "a.img")
    Traceback (most recent call last):
    ...
    ValueError: out '{name.__class__}.gif' has the placeholder {name.__class__}: only {name} and {suffix} are filled in
    """
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as e:
        raise ValueError(f"{key} {template!r} is not a template ({e}): write {{{{ and }}}} for braces") from None
    for field in fields:
        if field not in ("name", "suffix"):
            raise ValueError(f"{key} {template!r} has the placeholder {{{field}}}: only {{name}} and {{suffix}} "
                             "are filled in")
    name, suffix = name_of(url)
    return template.format(name=name, suffix=suffix)


def filled(url: str | None, **paths: Any) -> tuple:
    """The *paths* of one run, templates among them (:func:`fill`) filled from *url* (``None``: the sample).

    >>> filled("s3://b/day-1.img", out="{name}.webp", frames_dir=None)
    ('day-1.webp', None)
    """
    source = sample_path() if url is None else url
    return tuple(fill(path, key, source) if isinstance(path, str) and isinstance(source, str)
                 and ("{" in path or "}" in path) else path for key, path in paths.items())


def new_batch(now: float | None = None) -> str:
    """A fresh batch id: the local time to the second, and a random suffix.

    >>> import re
    >>> bool(re.fullmatch(r"\\d{8}-\\d{6}-[0-9a-f]{4}", new_batch()))
    True
    """
    return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{secrets.token_hex(2)}"


def build_graphs(urls: str | Sequence[str], out: str | None = None, data_file: str | None = None,
                 frames_dir: str | None = None, *, batch: str | None = None, **kwargs: Any) -> list[Pipeline]:
    """Build one pipeline per input; compute them together with ``dask.compute(*graphs)``.

    *urls* is a URL or an fsspec pattern, or a list of them (each input once); *out*, *data_file* and
    *frames_dir* are templates of :func:`paths_of`; other parameters of :func:`~daskgif.build_graph` apply to
    every input.  Each input's events, hook states (:class:`InputState`) and runs-page record carry the
    *batch* id (default: :func:`new_batch`).  No input, or two that would write one path, is a ``ValueError``.

    >>> import dask, fsspec, daskgif
    >>> sample = open(daskgif.sample_path(), "rb").read()
    >>> for day in ("mon", "tue"):
    ...     fsspec.filesystem("memory").pipe(f"/doc-many/in/{day}.img", sample)
    >>> graphs = build_graphs("memory://doc-many/in/*.img", out="memory://doc-many/{name}.gif",
    ...                       data_file="memory://doc-many/data/{name}.img", frames_dir="memory://doc-many/f/{name}")
    >>> [r.path for r in dask.compute(*graphs, scheduler="sync")]
    ['memory://doc-many/mon.gif', 'memory://doc-many/tue.gif']
    """
    inputs = storage.expand_inputs(urls, kwargs.get("storage_options"))
    if not inputs:
        raise ValueError(f"urls matched no input: {urls!r}")
    layout = paths_of(inputs, out=out, data_file=data_file, frames_dir=frames_dir)
    batch = batch or new_batch()
    return [make_pipeline(Params.from_arguments(url=url, **paths, **kwargs, batch=batch), kwargs.get("on_state", ()))
            for url, paths in zip(inputs, layout)]
