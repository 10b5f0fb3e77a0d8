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
import functools
import logging
import os
import sys
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
from dask.base import tokenize
from dask.delayed import Delayed

from daskgif import config

from daskgif.core import events

from daskgif import storage

from daskgif.core import limits

from daskgif.pipeline import manifest

from daskgif.pipeline import resume
from daskgif.errors import DaskgifError, GifFormatError, RunFailed
from daskgif.core.fanout import check_cancelled
from daskgif.gif.parse import parse_gif
from daskgif.gif.join import GifWriter
from daskgif.redact import mask, safe_parameters, scrub
from daskgif.pipeline.result import Result
from daskgif.pipeline.sample import sample_path
from daskgif.gif.split import Span, Spans, split_frames
from daskgif.core.state import SKIPPED, State
from daskgif.core.task import Mapped, Outcome, Skip, Task
from daskgif.core.timeouts import check_timeouts
from daskgif.codec import check_decodes

__all__ = ["build_graph", "Pipeline", "Params", "Step", "STEPS", "Frame", "FrameTable", "FramePaths"]

logger = logging.getLogger(__name__)

LOCAL_SCHEDULERS = ("sync", "synchronous", "single-threaded", "threads", "threading", "processes", "multiprocessing")


@dataclass(frozen=True)
class Params:
    """Everything a run's tasks need, read and checked on the client when the graph is built."""

    url: str
    data_file: str
    out: str
    frames_dir: str
    delimiter: bytes
    duration: int
    loop: int
    force: bool
    storage_options: dict | None
    on_error: str
    frames_per_task: int | str
    retries: int
    retry_delay: float
    run: str
    chunk_size: int = 4 * 2**20
    max_pixels: int | None = None
    fetch_timeout: float = 60
    max_bytes: int | None = None
    allowed_protocols: tuple[str, ...] | None = None
    fetch_deadline: float | None = None
    check_remote: bool = True
    validate: str = "decode"
    lock_timeout: float = 10
    retry: dict = field(default_factory=dict)
    task_timeout: dict = field(default_factory=dict)  # seconds per step name (daskgif.task-timeout)
    limits: dict = field(default_factory=dict)  # leases per kind (daskgif.limits)
    resume: bool = True  # keep the frames an earlier run wrote (daskgif.resume)

    def task(self, func: Callable, name: str, *, retried: bool = True, announce: dict | None = None,
             skip_on_upstream_skip: bool = True) -> Task:
        """A Task of this run: its retry policy (when *retried*) and the hook that sends its states."""
        retry = {"retries": self.retries, "retry_delay": self.retry_delay, **self.retry} if retried else {}
        return Task(func, name=name, skip_on_upstream_skip=skip_on_upstream_skip,
                    on_state=(events.StateHook(self.run, announce),), timeout=self.task_timeout.get(name),
                    timeout_setting=f"daskgif.task-timeout.{name}", **retry)


@dataclass(frozen=True)
class Frame:
    """A frame written to ``frames_dir``: what ``combine`` needs, without its bytes."""

    index: int
    path: str
    width: int
    height: int
    span: Span | None = None  # where its bytes lie in the data file; None for a converted frame
    size: int = 0  # bytes written, and their hash (daskgif.pipeline.manifest.digest): what a rerun checks
    digest: str = ""


class FrameTable(Sequence):
    """The frames of consecutive ``write-frame`` items, compact: a few arrays, not a :class:`Frame` per frame.

    What a ``write-frame`` batch returns (see :meth:`~daskgif.core.task.Task.map`'s
    *collect*) and what ``combine`` reads: per frame its canvas size and where it
    lies in the data file, or that it was not written (``None``).  Paths follow
    from ``frames_dir`` and the frame count, so a million frames take 24 MB, and
    an item is a :class:`Frame` again when asked for.

    >>> t = FrameTable("frames", 3)
    >>> t.append(Frame(0, "frames/frame_00.gif", 4, 2, Span(0, 0, 35))); t.append(None)
    >>> t.append(Frame(2, "frames/frame_02.gif", 5, 1))
    >>> t[0].span, t[1], t.size, list(t.paths())
    (Span(index=0, offset=0, length=35), None, (5, 2), ['frames/frame_00.gif', 'frames/frame_02.gif'])
    """

    __slots__ = ("frames_dir", "count", "first", "width", "height", "offset", "length", "nbytes", "digest")
    COLUMNS = ("width", "height", "offset", "length", "nbytes", "digest")
    DIGEST = 16  # bytes of a frame's hash (daskgif.pipeline.manifest.digest)

    def __init__(self, frames_dir: str, count: int, first: int = 0):
        self.frames_dir, self.count, self.first = frames_dir, count, first
        # width -1: not written; offset -1: converted (read from its own file)
        self.width, self.height, self.offset, self.length = array("l"), array("l"), array("q"), array("q")
        self.nbytes, self.digest = array("q"), bytearray()

    def __reduce__(self) -> Any:
        return (_frame_table, (self.frames_dir, self.count, self.first,
                               *(getattr(self, name) for name in self.COLUMNS)))

    def append(self, frame: Frame | None) -> None:
        """Add the next item: a written frame, or ``None``."""
        self.width.append(-1), self.height.append(-1), self.offset.append(-1), self.length.append(0)
        self.nbytes.append(0), self.digest.extend(bytes(self.DIGEST))
        if frame is not None:
            self.put(frame)

    def put(self, frame: Frame) -> None:
        """Set the entry of *frame* (one of this table's indices): a frame kept from an earlier run."""
        i, span = frame.index - self.first, frame.span
        self.width[i], self.height[i], self.nbytes[i] = frame.width, frame.height, frame.size
        self.offset[i], self.length[i] = (-1, 0) if span is None else (span.offset, span.length)
        self.digest[i * self.DIGEST:(i + 1) * self.DIGEST] = bytes.fromhex(frame.digest or "0" * 2 * self.DIGEST)

    @classmethod
    def concat(cls, parts: Sequence[FrameTable]) -> FrameTable:
        """Join the tables of consecutive batches."""
        out = cls(parts[0].frames_dir, parts[0].count, parts[0].first)
        for part in parts:
            for name in cls.COLUMNS:
                getattr(out, name).extend(getattr(part, name))
        return out

    def __len__(self) -> int:
        return len(self.width)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        if self.width[i] < 0:
            return None
        index, offset = self.first + i, self.offset[i]
        digest = self.digest[i * self.DIGEST:(i + 1) * self.DIGEST]
        return Frame(index, self.path(index), self.width[i], self.height[i],
                     None if offset < 0 else Span(index, offset, self.length[i]), self.nbytes[i],
                     digest.hex() if any(digest) else "")

    def path(self, index: int) -> str:
        """The file of frame *index*."""
        return storage.join_path(self.frames_dir, storage.frame_name(index, self.count))

    @property
    def size(self) -> tuple[int, int]:
        """The largest width and height of the written frames, ``(0, 0)`` when none."""
        return max(self.width, default=0), max(self.height, default=0)

    def written(self) -> Iterator[Frame]:
        """Every written frame, in order."""
        return (frame for frame in self if frame is not None)

    def paths(self) -> FramePaths:
        """The written frames' files, in order (computed when asked for)."""
        if self.first == 0 and len(self) == self.count and min(self.width, default=0) >= 0:
            return FramePaths(self.frames_dir, self.count)
        return FramePaths(self.frames_dir, self.count,
                          array("q", (self.first + i for i, w in enumerate(self.width) if w >= 0)))


def _frame_table(frames_dir: str, count: int, first: int, *columns: Any) -> FrameTable:
    table = FrameTable(frames_dir, count, first)
    for name, column in zip(FrameTable.COLUMNS, columns):
        setattr(table, name, column)
    return table


class FramePaths(Sequence):
    """The files of a run's frames, in order, computed from the folder and the frame count.

    ``Result.frames`` of a run: a sequence of paths that takes no room at any
    frame count (plus one integer per written frame when some were not).  As
    JSON (:meth:`to_json`) it is the list of paths while that list stays under
    :data:`JSON_LIST_LIMIT` characters, else a count and the name pattern, so
    ``daskgif run --json`` stays small (tens of kB) at any frame count.

    >>> paths = FramePaths("out/frames", 3)
    >>> list(paths), paths[-1], paths == ("out/frames/frame_00.gif", "out/frames/frame_01.gif", "out/frames/frame_02.gif")
    (['out/frames/frame_00.gif', 'out/frames/frame_01.gif', 'out/frames/frame_02.gif'], 'out/frames/frame_02.gif', True)
    >>> FramePaths("f", 200_000).to_json()["pattern"]
    'f/frame_{index:06d}.gif'
    """

    JSON_LIST_LIMIT = 16_000

    __slots__ = ("frames_dir", "count", "indices")

    def __init__(self, frames_dir: str, count: int, indices: array | None = None):
        self.frames_dir, self.count, self.indices = frames_dir, count, indices

    def __reduce__(self) -> Any:
        return (FramePaths, (self.frames_dir, self.count, self.indices))

    def __len__(self) -> int:
        return self.count if self.indices is None else len(self.indices)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        index = i if self.indices is None else self.indices[i]
        return storage.join_path(self.frames_dir, storage.frame_name(index, self.count))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (FramePaths, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<FramePaths: {len(self)} frames in {self.frames_dir!r}>"

    def to_json(self) -> list[str] | dict[str, Any]:
        """The paths as a list, or when that is long ``{"count", "pattern", "first", "last", ...}``."""
        if not len(self) or len(self) * (len(self[-1]) + 4) <= self.JSON_LIST_LIMIT:
            return list(self)
        width = len(storage.frame_name(self.count - 1, self.count)) - len("frame_.gif")
        found = {"count": len(self), "pattern": storage.join_path(self.frames_dir, f"frame_{{index:0{width}d}}.gif"),
                 "first": self[0], "last": self[-1]}
        if self.indices is not None:
            have = set(self.indices)
            skipped = [i for i in range(self.count) if i not in have]
            found["not_written"] = {"count": len(skipped), "first": skipped[:100]}
        return found


def fetch(_: None, p: Params) -> str:
    """Copy ``p.url`` to ``p.data_file``; skip when the data file is what that URL gave (unless ``p.force``)."""
    check_paths(p)
    storage.remove_stale_parts(*_folder_and_name(p.data_file))
    if not p.force:
        reason = storage.fetch_needed(p.url, p.data_file, p.storage_options, check_remote=p.check_remote,
                                 timeout=p.fetch_timeout, allowed_protocols=p.allowed_protocols)
        if reason is None:
            raise Skip(f"{p.data_file} is what the URL gave; force=True fetches it again", result=p.data_file)
        logger.info("Fetching: %s", mask(reason))
    with limits.hold("fetch", p.limits):
        storage.fetch_file(p.url, p.data_file, storage_options=p.storage_options, chunk_size=p.chunk_size,
                      timeout=p.fetch_timeout, max_bytes=p.max_bytes, allowed_protocols=p.allowed_protocols,
                      deadline=p.fetch_deadline)
    return p.data_file


def _folder_and_name(path: str) -> tuple[str, str]:
    """The folder of *path* and its name, for finding the temporary files written beside it."""
    head, sep, name = path.rpartition("/")
    return (head or ("/" if sep else ".")), name


def check_paths(p: Params) -> None:
    """Refuse outputs that clash, before any work: a usage error names both paths.

    The output may not be the data file or a frame file; an existing folder
    cannot become the output, nor an existing file the frames folder.
    """
    out, data_file = storage.local_path(p.out), storage.local_path(p.data_file)
    frames_dir = storage.local_path(p.frames_dir)
    if p.out == p.data_file or (out is not None and data_file is not None
                                and os.path.abspath(out) == os.path.abspath(data_file)):
        raise ValueError(f"out and data_file are the same file ({p.out!r}): the clip would overwrite its input")
    if out is not None and frames_dir is not None and os.path.dirname(os.path.abspath(out)) == \
            os.path.abspath(frames_dir) and os.path.basename(out).startswith("frame_"):
        raise ValueError(f"out {p.out!r} is in frames_dir {p.frames_dir!r} under a frame's name")
    if out is not None and os.path.isdir(out):
        raise ValueError(f"out {p.out!r} is an existing folder; give the path of the GIF to write")
    if frames_dir is not None and os.path.exists(frames_dir) and not os.path.isdir(frames_dir):
        raise ValueError(f"frames_dir {p.frames_dir!r} is an existing file, not a folder")


def split(data_file: str, p: Params) -> Spans:
    """Return the frame spans of the data file, compact (:class:`~daskgif.gif.split.Spans`), never frame bytes.

    With ``on_error="skip"`` a piece that cannot be walked is cut at the next
    delimiter and handed on, so that its ``write-frame`` reports it *Skipped*.
    """
    with storage.open_input(data_file, p.storage_options) as f:
        return Spans.from_spans(split_frames(f, p.delimiter, chunk_size=p.chunk_size, max_pixels=p.max_pixels,
                                             on_error=p.on_error))


def write_frame(span: Span, p: Params, count: int, source: storage.SpanReader | None = None) -> Frame:
    """Read one span of the data file, convert it to GIF if needed, check it decodes, write it atomically.

    *source* reads the data file, opened once per batch; default: open it for this frame.
    """
    check_cancelled(p.run)
    if source is None:
        data = storage.read_span(p.data_file, span.offset, span.length, p.storage_options)
    else:
        data = source.read(span.offset, span.length)
    converted = not data.startswith(b"GIF8")
    base = 0 if converted else span.offset
    try:
        if converted:
            from daskgif.codec import to_gif  # Pillow is imported only where a frame needs it

            data = to_gif(data, index=span.index, offset=span.offset)
        try:
            info = parse_gif(data, max_pixels=p.max_pixels)
        except GifFormatError as e:
            raise e.locate(frame=span.index, base=base) from None
        if p.validate == "decode" and not converted:  # a converted frame was just encoded from pixels
            check_decodes(data, index=span.index, offset=base, info=info)
    except GifFormatError as e:
        if p.on_error == "skip":
            raise Skip(f"unreadable frame dropped: {e}") from e
        raise
    path = storage.join_path(p.frames_dir, storage.frame_name(span.index, count))
    with limits.hold("write", p.limits):
        storage.write_bytes(path, data, p.storage_options)
    return Frame(span.index, path, *info.canvas, None if converted else span, len(data), manifest.digest(data))


def map_frames(spans: list[Span], p: Params) -> Mapped:
    """Launch the ``write-frame`` batches (see :mod:`daskgif.core.fanout`) and wait for all of them."""
    events.emit({"kind": "map", "run": p.run, "name": "write-frame", "total": len(spans)})
    storage.remove_stale_parts(p.frames_dir, "frame_")
    found = resume.plan(p.frames_dir, p.data_file, spans, _frame_settings(p), p.storage_options, p.resume)
    write = p.task(write_frame, "write-frame")
    try:
        mapped = write.map(spans, batch_size=p.frames_per_task, token=p.run, p=p, count=len(spans),
                           source=storage.SpanReader(p.data_file, p.storage_options), reuse=found.reuse,
                           collect=functools.partial(FrameTable, p.frames_dir, len(spans)))
    except RunFailed as e:
        written = [*_kept_frames(p, found, len(spans)), *getattr(e, "values", ())]
        resume.record(p.frames_dir, found, len(spans), map(_entry, written), p.storage_options)
        raise
    for frame in _kept_frames(p, found, len(spans)):
        mapped.values.put(frame)
    resume.record(p.frames_dir, found, len(spans), map(_entry, mapped.values.written()), p.storage_options)
    return mapped


def _frame_settings(p: Params) -> dict:
    """What, besides the data file, decides the frame files a run writes: a rerun keeps frames only if it is equal."""
    from daskgif import __version__

    return {"validate": p.validate, "max_pixels": p.max_pixels, "on_error": p.on_error, "daskgif": __version__}


def _kept_frames(p: Params, found: resume.Plan, count: int) -> Iterator[Frame]:
    """The :class:`Frame` of each frame a rerun keeps, from its manifest entry."""
    for e in found.kept.values():
        yield Frame(e.index, storage.join_path(p.frames_dir, storage.frame_name(e.index, count)), e.width, e.height,
                    None if e.converted else Span(e.index, e.offset, e.length), e.size, e.digest)


def _entry(f: Frame) -> manifest.Entry:
    span = f.span or Span(f.index, 0, 0)
    return manifest.Entry(f.index, span.offset, span.length, f.size, f.digest, f.width, f.height, f.span is None)


def read_frames(frames: Iterable[Frame], data_file: str, storage_options: dict | None) -> Iterator[bytes]:
    """Yield the bytes of the written *frames*, in order, with as few opens as possible.

    A frame written unchanged holds exactly its span of the data file, so it is
    read from there: one open and a forward scan, where reading 10,000 frame
    files costs 10,000 opens (10,000 requests on object storage).  A converted
    frame is read from its own file.
    """
    with storage.open_input(data_file, storage_options) as source:
        for frame in frames:
            if frame.span is None:
                with storage.open_input(frame.path, storage_options) as f:
                    yield f.read()
            else:
                source.seek(frame.span.offset)
                yield source.read(frame.span.length)


def combine(mapped: Mapped, p: Params) -> dict:
    """Join the written frames, in order and losslessly, into the animated GIF ``p.out``."""
    values = mapped.values
    if isinstance(values, FrameTable):  # frames come one at a time: a million are never all in memory
        written: Iterable[Frame] = values.written()
        size, paths = values.size, values.paths()
    else:
        written = [f for f in values if f is not None]
        size = (max((f.width for f in written), default=0), max((f.height for f in written), default=0))
        paths = [w.path for w in written]
    if not len(paths):
        raise DaskgifError(f"no frames left to combine ({mapped.states.counts.get(SKIPPED, 0)} skipped)")
    storage.remove_stale_parts(*_folder_and_name(p.out))
    with storage.atomic_write(p.out, p.storage_options) as f:
        with GifWriter(f, size, duration=p.duration, loop=p.loop, max_pixels=p.max_pixels) as gif:
            for data in read_frames(written, p.data_file, p.storage_options):
                check_cancelled(p.run)
                gif.add(data)
        nbytes = f.tell()  # after the writer's trailer: the size of the file as written
        check_cancelled(p.run)
    return {"size": nbytes, "width": size[0], "height": size[1], "frames": paths}


@dataclass(frozen=True)
class Step:
    """One step of the pipeline: a function of the previous step's value and the run's :class:`Params`."""

    name: str
    func: Callable[[Any, Params], Any]
    does: str
    writes: str | None = None
    retried: bool = True
    skip_on_upstream_skip: bool = True
    maps: str | None = None  # the name of the tasks this step launches at run time, one per batch of items


#: The pipeline, in order.  ``build_graph``, the result's states and the picture all follow it.
STEPS = (
    Step("fetch", fetch, "copies the URL to the data file", writes="data_file"),
    Step("split", split, "finds the frames in the data file", skip_on_upstream_skip=False),
    Step("map-frames", map_frames, "writes every frame (write-frame tasks)", writes="frames_dir", retried=False,
         maps="write-frame"),
    Step("combine", combine, "joins the frames into the animated GIF", writes="out"),
)


def finish(combined: Outcome, p: Params) -> Result:
    """Turn the last step's outcome into the run's :class:`Result` and announce its end."""
    value = combined.value
    result = Result(
        ok=True, path=p.out, frames=_frame_paths(value["frames"]), states=dict(combined.states), size=value["size"],
        started=min(s.start for s in combined.states.values() if s.start is not None), finished=time.time(),
        storage_options=p.storage_options,
    )
    events.emit({"kind": "run", "run": p.run, "state": "Success", "time": result.finished,
                 "frames": len(result.frames), "size": result.size})
    return result


def _frame_paths(frames: Sequence[str]) -> Sequence[str]:
    return frames if isinstance(frames, FramePaths) else tuple(frames)


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


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _positive_or_none(value: Any) -> bool:
    return value is None or _positive(value)


def _batch_size(value: Any) -> bool:
    return value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0)


def default_frames_dir(out: str) -> str:
    """The frames folder next to *out*: ``frames`` in *out*'s folder.

    >>> default_frames_dir("clip.gif"), default_frames_dir("s3://bucket/gifs/clip.gif")
    ('frames', 's3://bucket/gifs/frames')
    >>> default_frames_dir("file:///clip.gif")
    'file:///frames'
    
    """
    head, sep, _ = out.rpartition("/")
    return head + sep + "frames"


def check_arguments(delimiter: Any, duration: Any, loop: Any, retries: Any, retry_delay: Any, on_error: Any,
                    frames_per_task: Any) -> None:
    """Raise ``ValueError`` or ``TypeError`` naming the first bad argument.

    >>> check_arguments(b"\\n", 100, 0, 2, 10, "raise", "auto")
    >>> check_arguments(b"", 100, 0, 2, 10, "raise", "auto")
    Traceback (most recent call last):
    ...
    ValueError: delimiter must be non-empty bytes, got b''
    """
    if not isinstance(delimiter, bytes) or not delimiter:
        raise ValueError(f"delimiter must be non-empty bytes, got {delimiter!r}")
    for name, value in [("duration", duration), ("loop", loop), ("retries", retries)]:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if duration > 655350:
        raise ValueError(f"duration must be at most 655350 ms (GIF stores hundredths in 16 bits), got {duration}")
    if loop > 65535:
        raise ValueError(f"loop must be at most 65535, got {loop}")
    if not isinstance(retry_delay, (int, float)) or retry_delay < 0:
        raise ValueError(f"retry_delay must be a non-negative number of seconds, got {retry_delay!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if frames_per_task != "auto" and (not isinstance(frames_per_task, int) or frames_per_task < 1):
        raise ValueError(f"frames_per_task must be 'auto' or a positive integer, got {frames_per_task!r}")
