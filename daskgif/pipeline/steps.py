"""The pipeline's steps: what each does, and :data:`STEPS`, the one description of the pipeline.

``fetch -> split -> map-frames (write-frame tasks launched at run time) -> combine``.
Frame bytes never travel through the graph: ``split`` returns small spans, each
``write-frame`` batch reads its own spans from the data file, and ``combine``
streams the frames into the output.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from daskgif import storage
from daskgif.codec import check_decodes
from daskgif.core import events
from daskgif.core.fanout import Mapped
from daskgif.core.state import FAILED, SKIPPED, State
from daskgif.core.task import Outcome, Skip
from daskgif.errors import DaskgifError, GifFormatError, RunFailed
from daskgif.gif.join import GifWriter
from daskgif.gif.parse import parse_gif
from daskgif.gif.split import Span, Spans, split_frames
from daskgif.pipeline import limits, resume
from daskgif.pipeline.cancel import check_cancelled
from daskgif.pipeline.frames import Frame, FramePaths, FrameTable
from daskgif.pipeline.result import Result
from daskgif.pipeline.settings import Params, check_paths
from daskgif.redact import mask
from daskgif.version import __version__
from daskgif.writers import ApngWriter, Mp4Writer, WebpWriter

__all__ = ["Step", "STEPS", "WRITERS", "writer_for", "check_outputs", "fetch", "split", "map_frames", "write_frame",
           "combine", "make_result"]

logger = logging.getLogger(__name__)


def fetch(_: None, params: Params) -> str:
    """Copy the URL to the data file; skip when the data file is what that URL gave (unless ``force``)."""
    check_outputs(params)
    storage.remove_stale_parts(*_folder_and_name(params.data_file))
    if not params.force:
        reason = storage.fetch_needed(params.url, params.data_file, params.storage_options,
                                      check_remote=params.check_remote, timeout=params.fetch_timeout,
                                      allowed_protocols=params.allowed_protocols)
        if reason is None:
            raise Skip(f"{params.data_file} is what the URL gave; force=True fetches it again", result=params.data_file)
        logger.info("Fetching: %s", mask(reason))
    with limits.hold("fetch", params.limits):
        storage.fetch_file(params.url, params.data_file, storage_options=params.storage_options,
                           chunk_size=params.chunk_size, timeout=params.fetch_timeout, max_bytes=params.max_bytes,
                           allowed_protocols=params.allowed_protocols, deadline=params.fetch_deadline)
    return params.data_file


def _folder_and_name(path: str) -> tuple[str, str]:
    """The folder of *path* and its name, for finding the temporary files written beside it."""
    head, sep, name = path.rpartition("/")
    return (head or ("/" if sep else ".")), name




def split(data_file: str, params: Params) -> Spans:
    """Return the frame spans of the data file, compact (:class:`~daskgif.gif.split.Spans`), never frame bytes.

    With ``on_error="skip"`` a piece that cannot be walked is cut at the next
    delimiter and handed on, so that its ``write-frame`` reports it *Skipped*.
    """
    with storage.open_input(data_file, params.storage_options) as f:
        spans = split_frames(f, params.delimiter, chunk_size=params.chunk_size, max_pixels=params.max_pixels,
                             on_error=params.on_error)
        return Spans.from_spans(spans)


def write_frame(span: Span, params: Params, count: int, source: storage.SpanReader | None = None) -> Frame:
    """Read one span of the data file, convert it to GIF if needed, check it decodes, write it atomically.

    *source* reads the data file, opened once per batch; default: open it for this frame.
    """
    check_cancelled(params.run)
    if source is None:
        data = storage.read_span(params.data_file, span.offset, span.length, params.storage_options)
    else:
        data = source.read(span.offset, span.length)
    converted = not data.startswith(b"GIF8")
    base = 0 if converted else span.offset
    try:
        if converted:
            from daskgif.codec import (
                to_gif,  # Pillow is imported only where a frame needs it
            )

            data = to_gif(data, index=span.index, offset=span.offset)
        try:
            info = parse_gif(data, max_pixels=params.max_pixels)
        except GifFormatError as e:
            raise e.locate(frame=span.index, base=base) from None
        if params.validate == "decode" and not converted:  # a converted frame was just encoded from pixels
            check_decodes(data, index=span.index, offset=base, info=info)
    except GifFormatError as e:
        if params.on_error == "skip":
            raise Skip(f"unreadable frame dropped: {e}") from e
        raise
    path = storage.join_path(params.frames_dir, storage.frame_name(span.index, count))
    with limits.hold("write", params.limits):
        storage.write_bytes(path, data, params.storage_options)
    return Frame(span.index, path, *info.canvas, None if converted else span, len(data), resume.digest(data))


def map_frames(spans: list[Span], params: Params) -> Mapped:
    """Launch the ``write-frame`` batches (see :mod:`daskgif.core.fanout`) and wait for all of them.

    A rerun keeps a frame an earlier run wrote only once its batch has proven it
    (:class:`KeptFrames`); the manifest only says which frames to try.
    """
    events.emit({"kind": "map", "run": params.run, "name": "write-frame", "total": len(spans)})
    storage.remove_stale_parts(params.frames_dir, "frame_")
    rerun = resume.plan(params.frames_dir, params.data_file, spans, _frame_settings(params), params.storage_options,
                        params.resume)
    write = params.task(write_frame, "write-frame")
    source = storage.SpanReader(params.data_file, params.storage_options)
    kept = KeptFrames(params, rerun.reuse, len(spans), source) if rerun.kept else None
    try:
        mapped = write.map(spans, batch_size=params.frames_per_task, token=params.run, params=params, count=len(spans),
                           source=source, reuse=kept,
                           collect=functools.partial(FrameTable, params.frames_dir, len(spans)))
    except RunFailed as e:
        resume.record(params.frames_dir, rerun, len(spans), map(_entry, e.values), params.storage_options)
        raise
    resume.record(params.frames_dir, rerun, len(spans), map(_entry, mapped.values.written()), params.storage_options)
    return mapped


def _frame_settings(params: Params) -> dict:
    """What, besides the data file, decides the frame files a run writes: a rerun keeps frames only if it is equal."""
    return {"validate": params.validate, "max_pixels": params.max_pixels, "on_error": params.on_error,
            "daskgif": __version__}


class KeptFrames:
    """The frames of an earlier run that a rerun keeps: each one proven, in its own batch, before it is kept.

    A frame file is kept only if its bytes are exactly its span of the data file
    (read for the comparison), so a manifest that lies, a frame file changed by
    hand or a new data file can never put a wrong frame into the output; the
    frame's size is read from those bytes, never from the manifest.  A converted
    frame (not GIF in the data file) is always written again.  ``None``: write it.
    """

    def __init__(self, params: Params, candidates: resume.Ranges, count: int, source: storage.SpanReader):
        self.params, self.candidates, self.count, self.source = params, candidates, count, source

    def __call__(self, index: int, span: Span) -> Frame | None:
        if index not in self.candidates:
            return None
        path = storage.join_path(self.params.frames_dir, storage.frame_name(index, self.count))
        try:
            data = self.source.read(span.offset, span.length)
            if not data.startswith(b"GIF8"):
                return None
            with storage.open_input(path, self.params.storage_options) as f:
                if f.read(span.length + 1) != data:
                    return None
            info = parse_gif(data, max_pixels=self.params.max_pixels)
        except (OSError, EOFError, GifFormatError):
            return None
        return Frame(index, path, *info.canvas, span, len(data), resume.digest(data))


def _entry(f: Frame) -> resume.Entry:
    span = f.span or Span(f.index, 0, 0)
    return resume.Entry(f.index, span.offset, span.length, f.size, f.digest, f.width, f.height, f.span is None)


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


def combine(mapped: Mapped, params: Params) -> dict:
    """Join the written frames, in order, into ``params.out`` with the writer of its suffix (:data:`WRITERS`)."""
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
    storage.remove_stale_parts(*_folder_and_name(params.out))
    with storage.atomic_write(params.out, params.storage_options) as f:
        writer = writer_for(params.out)
        with writer(f, size, duration=params.duration, loop=params.loop, max_pixels=params.max_pixels) as gif:
            for data in read_frames(written, params.data_file, params.storage_options):
                check_cancelled(params.run)
                gif.add(data)
        nbytes = f.tell()  # after the writer's trailer: the size of the file as written
        check_cancelled(params.run)
    return {"size": nbytes, "width": size[0], "height": size[1], "frames": paths}


#: The writer of each output suffix: ``Writer(file, size, duration=, loop=, max_pixels=)``, a context manager
#: whose ``add(gif_bytes)`` appends one frame.  Frames on disk are GIF whatever the output.  A writer may have
#: a classmethod ``check(duration=)`` that refuses, before any work, what it cannot write (a missing extra).
WRITERS: dict[str, Callable[..., Any]] = {".gif": GifWriter, ".webp": WebpWriter, ".png": ApngWriter,
                                          ".mp4": Mp4Writer}


def writer_for(out: str) -> Callable[..., Any]:
    """The writer for the output path *out*, chosen by its suffix.

    >>> writer_for("s3://bucket/clip.GIF").__name__, writer_for("clip.webp").__name__
    ('GifWriter', 'WebpWriter')
    >>> writer_for("clip.avi")
    Traceback (most recent call last):
    ...
    ValueError: out 'clip.avi' has no supported suffix: give one of .gif, .webp, .png, .mp4
    """
    suffix = "." + out.rpartition("/")[2].rpartition(".")[2].lower() if "." in out.rpartition("/")[2] else ""
    if suffix not in WRITERS:
        raise ValueError(f"out {out!r} has no supported suffix: give one of {', '.join(WRITERS)}")
    return WRITERS[suffix]


def check_outputs(params: Params) -> None:
    """Refuse, before any work, outputs that clash (see :func:`check_paths`), have no writer, or are not files."""
    check_paths(params)
    check = getattr(writer_for(params.out), "check", None)  # GifWriter (daskgif.gif, no Pillow) needs none
    if check is not None:
        check(duration=params.duration)
    for name, path in (("out", params.out), ("data_file", params.data_file)):
        try:
            storage.check_target(path)
        except FileExistsError as e:
            raise ValueError(f"{name} {mask(path)!r} {e.strerror}") from None


@dataclass(frozen=True)
class Step:
    """One step of the pipeline: a function of the previous step's value and the run's :class:`Params`.

    Every step holds the run's lease on the data file while it runs (see
    :class:`~daskgif.storage.Lease`); the lease ends with the run's last step, or
    with a step that fails.
    """

    name: str
    func: Callable[[Any, Params], Any]
    does: str
    writes: str | None = None
    retried: bool = True
    skip_on_upstream_skip: bool = True
    maps: str | None = None  # the name of the tasks this step launches at run time, one per batch of items
    timed: bool = True  # daskgif.task-timeout may name it (map-frames only waits: its batches are timed)

    def __call__(self, value: Any, params: Params) -> Any:
        with params.lease.kept():
            return self.func(value, params)

    def task(self, params: Params, announce: dict | None = None) -> Any:
        """The :class:`~daskgif.core.task.Task` of this step in the run of *params*."""
        return params.task(self, self.name, retried=self.retried, announce=announce,
                      skip_on_upstream_skip=self.skip_on_upstream_skip, hooks=(ReleaseOnFailure(params.lease),))


class ReleaseOnFailure:
    """A state hook: a step that failed ends the run, and with it the run's lease on the data file."""

    def __init__(self, lease: storage.Lease):
        self.lease = lease

    def __call__(self, state: State) -> None:
        if state.state == FAILED and state.index is None:
            self.lease.release()


#: The pipeline, in order.  ``build_graph``, the result's states and the picture all follow it.
STEPS = (
    Step("fetch", fetch, "copies the URL to the data file", writes="data_file"),
    Step("split", split, "finds the frames in the data file", skip_on_upstream_skip=False),
    Step("map-frames", map_frames, "writes every frame (write-frame tasks)", writes="frames_dir", retried=False,
         maps="write-frame", timed=False),
    Step("combine", combine, "joins the frames into the output", writes="out"),
)


def timed_names(steps: Sequence[Step] = STEPS) -> tuple[str, ...]:
    """The task names ``daskgif.task-timeout`` may give a timeout, in pipeline order.

    >>> timed_names()
    ('fetch', 'split', 'write-frame', 'combine')
    """
    return tuple(name for step in steps for name in ((step.name,) if step.timed else ()) + ((step.maps,) if step.maps
                                                                                              else ()))


def make_result(last: Outcome, combined: Outcome, params: Params) -> Result:
    """The run's :class:`Result`: the states of every step (*last* carries them), the output *combined* wrote.

    It ends the run's lease on the data file and announces the run's end.
    """
    value = combined.value
    result = Result(
        ok=True, path=params.out, frames=_frame_paths(value["frames"]), states=dict(last.states), size=value["size"],
        started=min(s.start for s in last.states.values() if s.start is not None), finished=time.time(),
        storage_options=params.storage_options,
    )
    params.lease.release()
    events.emit({"kind": "run", "run": params.run, "state": "Success", "time": result.finished,
                 "frames": len(result.frames), "size": result.size})
    return result


def _frame_paths(frames: Sequence[str]) -> Sequence[str]:
    return frames if isinstance(frames, FramePaths) else tuple(frames)
