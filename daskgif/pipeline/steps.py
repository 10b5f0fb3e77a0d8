"""The pipeline's steps, and :data:`STEPS`, the one description of the pipeline: ``fetch -> split -> map-frames
(write-frame tasks launched at run time) -> combine``.  Frame bytes never travel through the graph: ``split``
returns small spans, each ``write-frame`` batch reads its own, and ``combine`` streams the frames into the output.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
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
from daskgif.pipeline import frames, limits
from daskgif.pipeline.cancel import check_cancelled, stopped
from daskgif.pipeline.frames import Frame, FramePaths, FrameTable, digest
from daskgif.pipeline.result import Result
from daskgif.pipeline.settings import Params
from daskgif.redact import mask
from daskgif.version import __version__
from daskgif.writers import ApngWriter, Mp4Writer, WebpWriter

__all__ = ["Step", "STEPS", "WRITERS", "writer_for", "check_outputs", "fetch", "split", "map_frames", "write_frame",
           "combine", "finish"]

logger = logging.getLogger(__name__)


def fetch(_: None, params: Params) -> str:
    """Copy the URL to the data file; skip when the data file is what that URL gave (unless ``force``)."""
    check_outputs(params)
    storage.remove_stale_parts(*_folder_and_name(params.data_file))
    if not params.force:
        reason = storage.fetch_needed(params.url, params.data_file, params.storage_options,
                                      check_remote=params.fetch_check_remote, timeout=params.fetch_timeout,
                                      allowed_protocols=params.allowed_protocols)
        if reason is None:
            raise Skip(f"{params.data_file} is what the URL gave; force=True fetches it again", result=params.data_file)
        logger.info("Fetching: %s", mask(reason))
    with limits.hold("fetch", params.limits):
        storage.fetch_file(params.url, params.data_file, storage_options=params.storage_options,
                           chunk_size=params.chunk_size, timeout=params.fetch_timeout, max_bytes=params.max_bytes,
                           allowed_protocols=params.allowed_protocols, deadline=params.fetch_deadline,
                           stop=functools.partial(stopped, params.run))
    return params.data_file


def _folder_and_name(path: str) -> tuple[str, str]:
    """The folder of *path* and its name, for finding the temporary files written beside it."""
    head, sep, name = path.rpartition("/")
    return (head or ("/" if sep else ".")), name


def split(data_file: str, params: Params) -> Spans:
    """Return the frame spans of the data file, compact, never frame bytes (with ``on_error="skip"`` also those
    that cannot be walked, for their ``write-frame`` to skip)."""
    with storage.open_input(data_file, params.storage_options) as f:
        return Spans.of(split_frames(f, params.delimiter, chunk_size=params.chunk_size, max_pixels=params.max_pixels,
                                     on_error=params.on_error))


def write_frame(span: Span, params: Params, count: int, source: storage.SpanReader) -> Frame:
    """Read one span of the data file (with *source*), convert it to GIF if needed, check it, write it atomically."""
    check_cancelled(params.run)
    path = storage.join_path(params.frames_dir, storage.frame_name(span.index, count))
    data = source.read(span.offset, span.length)
    converted = not data.startswith(b"GIF8")
    base = 0 if converted else span.offset
    try:
        if converted:
            from daskgif.codec import to_gif  # Pillow is imported only where a frame needs it

            data = to_gif(data, index=span.index, offset=span.offset, max_pixels=params.max_pixels)
        try:
            info = parse_gif(data, max_pixels=params.max_pixels)
        except GifFormatError as e:  # in a converted frame, its bytes are not the data file's: name its start
            raise (e.locate(frame=span.index, base=base) if not converted else
                   GifFormatError(e.message, span.offset, span.index)) from None
        if params.validate == "decode" and not converted:  # a converted frame was just encoded from pixels
            check_decodes(data, index=span.index, offset=base, info=info)
    except GifFormatError as e:
        if params.on_error == "skip":
            try:
                storage.remove_file(path, params.storage_options)  # an earlier run's frame there is not this one
            except OSError as gone:
                logger.warning("Cannot remove the earlier frame file %s: %s", path, gone)
            raise Skip(f"unreadable frame dropped: {e}") from e
        raise
    with limits.hold("write", params.limits):
        storage.write_bytes(path, data, params.storage_options)
    return Frame(*span, len(data), digest(data), *info.canvas, converted)


def map_frames(spans: Spans, params: Params) -> Mapped:
    """Launch the ``write-frame`` batches (see :mod:`daskgif.core.fanout`), wait for all, record the manifest."""
    events.emit({"kind": "map", "run": params.run, "name": "write-frame", "total": len(spans)})
    storage.remove_stale_parts(params.frames_dir, storage.FRAME_PREFIX)
    settings = {"validate": params.validate, "max_pixels": params.max_pixels, "on_error": params.on_error,
                "daskgif": __version__}  # what, besides the data file, decides what a frame file holds
    head, kept = frames.plan(params.frames_dir, params.data_file, spans, settings, params.storage_options,
                             params.resume)
    source = storage.SpanReader(params.data_file, params.storage_options)
    try:
        mapped = params.task(write_frame, "write-frame").map(
            spans, batch_size=params.frames_per_task, token=params.run, params=params, count=len(spans),
            source=source, reuse=KeptFrames(params, kept, source) if len(kept) else None, collect=FrameTable)
    except RunFailed as e:
        frames.record(params.frames_dir, head, e.values, params.storage_options)
        raise
    frames.record(params.frames_dir, head, mapped.values.written(), params.storage_options)
    return mapped


class KeptFrames:
    """The frames of an earlier run that a rerun keeps (``None``: write it): only a frame file whose bytes are
    exactly its span of the data file, so a manifest that lies, a frame file changed by hand or a new data file
    never puts a wrong frame into the output.  A converted frame (not GIF in the data file) is written again."""

    def __init__(self, params: Params, candidates: FramePaths, source: storage.SpanReader):
        self.params, self.candidates, self.source = params, candidates, source

    def __call__(self, index: int, span: Span) -> Frame | None:
        if not self.candidates.holds(index):
            return None
        try:
            data = self.source.read(span.offset, span.length)
            if not data.startswith(b"GIF8"):
                return None
            with storage.open_input(self.candidates.path(index), self.params.storage_options) as f:
                if f.read(span.length + 1) != data:
                    return None
            info = parse_gif(data, max_pixels=self.params.max_pixels)
        except (OSError, EOFError, GifFormatError):
            return None
        return Frame(*span, len(data), digest(data), *info.canvas, False)


def combine(mapped: Mapped, params: Params) -> dict:
    """Join the written frames, one at a time, into ``params.out`` with the writer of its suffix (:data:`WRITERS`).

    A frame written unchanged is exactly its span of the data file, so it is read from there: one open and a
    forward scan, where 10,000 frame files cost 10,000 opens (requests, on object storage).
    """
    table: FrameTable = mapped.values
    paths = FramePaths.of(params.frames_dir, len(table), table.indices())
    if not len(paths):
        raise DaskgifError(f"no frames left to combine ({mapped.states.counts.get(SKIPPED, 0)} skipped)")
    storage.remove_stale_parts(*_folder_and_name(params.out))
    size, options, writer = table.size, params.storage_options, writer_for(params.out)
    with storage.atomic_write(params.out, options) as f, storage.open_input(params.data_file, options) as source:
        with writer(f, size, duration=params.duration, loop=params.loop, max_pixels=params.max_pixels) as gif:
            for frame in table.written():
                check_cancelled(params.run)
                if frame.converted:
                    with storage.open_input(paths.path(frame.index), options) as one:
                        gif.add(one.read())
                else:
                    source.seek(frame.offset)
                    gif.add(source.read(frame.length))
        nbytes = f.tell()  # after the writer's trailer: the size of the file as written
        check_cancelled(params.run)
    return {"size": nbytes, "width": size[0], "height": size[1], "frames": paths}


#: The writer of each output suffix: ``Writer(file, size, duration=, loop=, max_pixels=)``, a context manager
#: whose ``add(gif_bytes)`` appends one frame.  Frames on disk are GIF whatever the output.  A writer may have
#: a classmethod ``check(duration=)`` that refuses, before any work, what it cannot write (a missing extra).
WRITERS: dict[str, Callable[..., Any]] = {".gif": GifWriter, ".webp": WebpWriter, ".png": ApngWriter,
                                          ".mp4": Mp4Writer}


def writer_for(out: str) -> Callable[..., Any]:
    """The writer for the output path *out*, chosen by its suffix (``.GIF`` is ``.gif``).

    >>> writer_for("clip.avi")
    Traceback (most recent call last):
    ...
    ValueError: out 'clip.avi' has no supported suffix: give one of .gif, .webp, .png, .mp4
    """
    suffix = "." + out.rpartition("/")[2].rpartition(".")[2].lower() if "." in out.rpartition("/")[2] else ""
    if suffix not in WRITERS:
        raise ValueError(f"out {out!r} has no supported suffix: give one of {', '.join(WRITERS)}")
    return WRITERS[suffix]


def check_outputs(p: Params) -> None:
    """Refuse, before any work, outputs that clash, have no writer or are not files, naming the paths: the
    output may not be the data file or a frame file, nor an existing folder; the frames folder no file."""
    if place(p.out) == place(p.data_file):
        raise ValueError(f"out and data_file are the same file ({p.out!r}): the clip would overwrite its input")
    for name in ("out", "data_file"):
        if in_frames_dir(getattr(p, name), p.frames_dir):
            raise ValueError(f"{name} {getattr(p, name)!r} is in frames_dir {p.frames_dir!r} under a name the run "
                             "writes or clears there (frame_*, the manifest, the lock): give it another name or folder")
    out, frames_dir = storage.local_path(p.out), storage.local_path(p.frames_dir)
    if out is not None and os.path.isdir(out):
        raise ValueError(f"out {p.out!r} is an existing folder; give the path of the GIF to write")
    if frames_dir is not None and os.path.exists(frames_dir) and not os.path.isdir(frames_dir):
        raise ValueError(f"frames_dir {p.frames_dir!r} is an existing file, not a folder")
    check = getattr(writer_for(p.out), "check", None)  # GifWriter (daskgif.gif, no Pillow) needs none
    if check is not None:
        check(duration=p.duration)
    for name, path in (("out", p.out), ("data_file", p.data_file)):
        try:
            storage.check_target(path)
        except FileExistsError as e:
            raise ValueError(f"{name} {mask(path)!r} {e.strerror}") from None


def place(path: str) -> str:
    """Where *path* points: a local path made absolute, any other as written, without a trailing ``/``.

    >>> place("s3://b/f/"), place("/data/./x.img")
    ('s3://b/f', '/data/x.img')
    """
    local = storage.local_path(path)
    return os.path.abspath(local) if local is not None else path.rstrip("/")


def in_frames_dir(path: str, frames_dir: str) -> bool:
    """Whether a run writing frames to *frames_dir* may write, replace or remove *path*.

    >>> in_frames_dir("frames/frame_99.gif", "frames"), in_frames_dir("frames/notes.txt", "frames/")
    (True, False)
    >>> in_frames_dir("s3://b/f/.frames-manifest.json", "s3://b/f"), in_frames_dir("frame_01.gif", "frames")
    (True, False)
    """
    head, _, name = path.rstrip("/").rpartition("/")
    # Its frames, their temporary files, the manifest and its temporary files, locks.
    written = name.startswith((storage.FRAME_PREFIX, "." + storage.FRAME_PREFIX, frames.MANIFEST_NAME)) \
        or name.endswith(".lock")
    return written and place(head or ".") == place(frames_dir)


@dataclass(frozen=True)
class Step:
    """One step of the pipeline: a function of the previous step's value and the run's :class:`Params`.

    It holds the run's :class:`~daskgif.storage.Lease` while it runs; the lease ends with the last step or a failed one.
    """

    name: str
    func: Callable[[Any, Params], Any]
    does: str
    writes: str | None = None
    retried: bool = True
    skip_on_upstream_skip: bool = True
    maps: str | None = None  # the name of the tasks this step launches at run time, one per batch of items

    def __call__(self, value: Any, params: Params) -> Any:
        with params.lease.kept():
            return self.func(value, params)

    def task(self, params: Params, announce: dict | None = None) -> Any:
        """The :class:`~daskgif.core.task.Task` of this step in the run of *params*."""
        return params.task(self, self.name, retried=self.retried, announce=announce,
                           skip_on_upstream_skip=self.skip_on_upstream_skip,
                           hooks=(functools.partial(release_on_failure, params.lease),))


def release_on_failure(lease: storage.Lease, state: State) -> None:
    """A state hook: a step that failed ends the run, and with it the run's lease on the data file."""
    if state.state == FAILED and state.index is None:
        lease.release()


#: The pipeline, in order.  ``build_graph``, the result's states and the picture all follow it.
STEPS = (
    Step("fetch", fetch, "copies the URL to the data file", writes="data_file"),
    Step("split", split, "finds the frames in the data file", skip_on_upstream_skip=False),
    Step("map-frames", map_frames, "writes every frame (write-frame tasks)", writes="frames_dir", retried=False,
         maps="write-frame"),
    Step("combine", combine, "joins the frames into the output", writes="out"),
)


def finish(run: Callable[[Any], Outcome], previous: Any, combined: Outcome | None, params: Params) -> Result:
    """Run the last step (*run* of the *previous* step's outcome), then end the run: its :class:`Result`, made from
    *combined*, ``combine``'s outcome (``None`` when ``combine`` is the last step)."""
    last = run(previous)
    try:
        value = (combined or last).value
        result = Result(ok=True, path=params.out, frames=value["frames"], states=dict(last.states),
                        size=value["size"], started=min(s.start for s in last.states.values() if s.start is not None),
                        finished=time.time(), storage_options=params.storage_options)
    finally:
        params.lease.release()
    events.emit({"kind": "run", "run": params.run, "state": "Success", "time": result.finished,
                 "frames": len(result.frames), "size": result.size})
    return result
