"""The daskgif pipeline as a lazy Dask graph: fetch -> split -> write-frame (mapped) -> combine.

``build_graph`` reads configuration and validates its arguments on the client,
then wires five tasks with readable keys::

    fetch-<token> -> split-<token> -> map-frames-<token> -> combine-<token> -> finish-<token>
                                        |
                                        +-> write-frame-<i>-<token>  (launched at run time)

Frame bytes never travel through the graph: ``split`` returns small spans, each
``write-frame`` task reads its own span from the data file, and ``combine``
streams the frames into the output, reading each unchanged frame from the data
file (one open) and each converted one from its frame file.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dask
from dask.base import tokenize
from dask.delayed import Delayed

from daskgif import config, io
from daskgif.errors import DaskgifError, GifFormatError, RunFailed
from daskgif.gif import parse_gif
from daskgif.join import GifWriter
from daskgif.result import Result, iter_states
from daskgif.sample import sample_path
from daskgif.split import Span, split_frames
from daskgif.tasks import FAILED, SUCCESS, Outcome, Skip, State, Task, first_failure

__all__ = ["build_graph"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """A frame written to ``frames_dir``: what ``combine`` needs, without its bytes."""

    index: int
    path: str
    width: int
    height: int
    span: Span | None = None  # where its bytes lie in the data file; None for a converted frame


def fetch(url: str, data_file: str, *, force: bool, storage_options: dict | None, **options: Any) -> str:
    """Copy *url* to *data_file*, or skip when *data_file* exists and not *force*."""
    if not force and io.exists(data_file, storage_options):
        raise Skip(f"{data_file} exists; force=True fetches it again", result=data_file)
    io.fetch_file(url, data_file, storage_options=storage_options, **options)
    return data_file


def split(data_file: str, *, delimiter: bytes, storage_options: dict | None, chunk_size: int,
          max_pixels: int | None, on_error: str = "raise") -> list[Span]:
    """Return the frame spans of *data_file*: small tuples, never frame bytes.

    With ``on_error="skip"`` a piece that cannot be walked is cut at the next
    delimiter and handed on, so that its ``write-frame`` reports it *Skipped*.
    """
    with io.open_input(data_file, storage_options) as f:
        return list(split_frames(f, delimiter, chunk_size=chunk_size, max_pixels=max_pixels, on_error=on_error))


def write_frame(span: Span, *, data_file: str, frames_dir: str, count: int, storage_options: dict | None,
                max_pixels: int | None, on_error: str) -> Frame:
    """Read one span of *data_file*, convert it to GIF if needed, write it atomically."""
    data = io.read_span(data_file, span.offset, span.length, storage_options)
    try:
        converted = not data.startswith(b"GIF8")
        if converted:
            from daskgif.convert import to_gif  # Pillow is imported only where a frame needs it

            data = to_gif(data, index=span.index, offset=span.offset)
        try:
            info = parse_gif(data, max_pixels=max_pixels)
        except GifFormatError as e:
            raise e.locate(frame=span.index, base=0 if converted else span.offset) from None
    except GifFormatError as e:
        if on_error == "skip":
            raise Skip(f"unreadable frame dropped: {e}") from e
        raise
    path = io.join_path(frames_dir, io.frame_name(span.index, count))
    io.write_bytes(path, data, storage_options)
    return Frame(span.index, path, info.width, info.height, None if converted else span)


def map_frames(write: Task, spans: list[Span], *, batch_size: int | str, token: str, **kwargs: Any) -> list[Outcome]:
    """Launch one ``write-frame`` run per span (grouped into tasks) and wait for all of them."""
    return write.map(spans, batch_size=batch_size, token=token, count=len(spans), **kwargs)


def read_frames(frames: list[Frame], data_file: str, storage_options: dict | None) -> Iterator[bytes]:
    """Yield the bytes of the written *frames*, in order, with as few opens as possible.

    A frame written unchanged holds exactly its span of the data file, so it is
    read from there: one open and a forward scan, where reading 10,000 frame
    files costs 10,000 opens (10,000 requests on object storage).  A converted
    frame is read from its own file.
    """
    with io.open_input(data_file, storage_options) as source:
        for frame in frames:
            if frame.span is None:
                with io.open_input(frame.path, storage_options) as f:
                    yield f.read()
            else:
                source.seek(frame.span.offset)
                yield source.read(frame.span.length)


def combine(frames: list[Outcome], *, data_file: str, out: str, duration: int, loop: int,
            storage_options: dict | None) -> dict:
    """Join the written frames, in order and losslessly, into the animated GIF *out*."""
    failed = [o.state for o in frames if o.state.state == FAILED]
    if failed:
        raise DaskgifError(f"{len(failed)} frame(s) failed, first frame {failed[0].index}: {failed[0].message}")
    written: list[Frame] = [o.value for o in frames if o.state.state == SUCCESS]
    if not written:
        raise DaskgifError(f"no frames left to combine ({len(frames)} skipped)")
    size = (max(f.width for f in written), max(f.height for f in written))
    with io.atomic_write(out, storage_options) as f, GifWriter(f, size, duration=duration, loop=loop) as gif:
        for data in read_frames(written, data_file, storage_options):
            gif.add(data)
        nbytes = f.tell()
    return {"path": out, "size": nbytes, "width": size[0], "height": size[1], "frames": [w.path for w in written]}


def finish(fetched: Outcome, spans: Outcome, mapped: Outcome, combined: Outcome, *, out: str,
           storage_options: dict | None) -> Result:
    """Gather every task's state into a :class:`Result`; raise :class:`RunFailed` if any failed."""
    frames = mapped.value or []
    states = {
        "fetch": fetched.state,
        "split": spans.state,
        "map-frames": mapped.state,
        "write-frame": {o.state.index: o.state for o in frames},
        "combine": combined.state,
    }
    value = combined.value or {}
    result = Result(
        ok=combined.state.state == SUCCESS and all(o.state.state != FAILED for o in frames),
        path=out,
        frames=tuple(value.get("frames", ())),
        states=states,
        size=value.get("size"),
        started=min(s.start for s in iter_states(states) if s.start is not None),
        finished=time.time(),
        storage_options=storage_options,
    )
    if result.ok:
        logger.info("Run SUCCESS: all reference tasks succeeded (%d frames, %s)", len(result.frames), out)
        return result
    root = first_failure(iter_states(states))  # in pipeline order: the cause, not its consequences
    logger.error("Run FAILED: some reference tasks failed; %s", describe(root))
    raise RunFailed(f"Run FAILED: {describe(root)}", result)


def describe(state: State) -> str:
    """Name a failed task, its frame, its attempts and its cause in one line.

    >>> describe(State("write-frame", "Failed", attempts=3, index=4, message="OSError: disk full"))
    "task 'write-frame' (frame 4) failed after 3 attempts: OSError: disk full"
    """
    frame = "" if state.index is None else f" (frame {state.index})"
    attempts = f"{state.attempts} attempt{'s' * (state.attempts != 1)}"
    return f"task {state.name!r}{frame} failed after {attempts}: {state.message}"


def build_graph(
    url: str | None = None,
    data_file: str = "image-data.img",
    out: str = "clip.gif",
    frames_dir: str = ".",
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
) -> Delayed:
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
    frames_dir : str
        Folder for ``frame_00.gif``, ``frame_01.gif``, ...
    delimiter : bytes
        What separates frames in the data file.
    duration : int
        Milliseconds per frame.
    loop : int
        How many times the animation plays; ``0`` loops forever.
    retries, retry_delay : int, float
        Attempts after the first, and seconds between them, for the I/O tasks.
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
        Called with every task's :class:`~daskgif.tasks.State` as it changes.

    Returns
    -------
    dask.delayed.Delayed
        Computing it runs the pipeline and returns a :class:`~daskgif.result.Result`,
        or raises :class:`~daskgif.errors.RunFailed` naming the failed task.

    Examples
    --------
    >>> graph = build_graph(data_file="memory://doc/image-data.img", out="memory://doc/clip.gif",
    ...                     frames_dir="memory://doc/frames")
    >>> result = graph.compute(scheduler="sync")
    >>> result.ok, len(result.frames), result.frames[0]
    (True, 32, 'memory://doc/frames/frame_00.gif')
    """
    on_error = config.get("on-error") if on_error is None else on_error
    frames_per_task = config.get("frames-per-task") if frames_per_task is None else frames_per_task
    check_arguments(delimiter, duration, loop, retries, retry_delay, on_error, frames_per_task)
    url = sample_path() if url is None else url
    max_pixels = config.get("max-pixels")
    chunk_size = config.get("chunk-size")
    retry = {"retries": retries, "retry_delay": retry_delay, "backoff": config.get("retry-backoff"),
             "on_state": tuple(on_state)}
    # Writes get unique keys: two builds with equal arguments are two runs.
    token = tokenize(url, data_file, out, frames_dir, delimiter, duration, loop, force, uuid.uuid4().hex)

    fetched = Task(fetch, name="fetch", **retry)(
        url, data_file, force=force, storage_options=storage_options, chunk_size=chunk_size,
        timeout=config.get("fetch-timeout"), max_bytes=config.get("max-bytes"),
        allowed_protocols=tuple(config.get("allowed-protocols")), dask_key_name=f"fetch-{token}")
    spans = Task(split, name="split", skip_on_upstream_skip=False, **retry)(
        fetched, delimiter=delimiter, storage_options=storage_options, chunk_size=chunk_size,
        max_pixels=max_pixels, on_error=on_error, dask_key_name=f"split-{token}")
    mapped = Task(map_frames, name="map-frames", on_state=tuple(on_state))(
        Task(write_frame, name="write-frame", **retry), spans, batch_size=frames_per_task, token=token,
        data_file=data_file, frames_dir=frames_dir, storage_options=storage_options, max_pixels=max_pixels,
        on_error=on_error, dask_key_name=f"map-frames-{token}")
    combined = Task(combine, name="combine", **retry)(
        mapped, data_file=data_file, out=out, duration=duration, loop=loop, storage_options=storage_options,
        dask_key_name=f"combine-{token}")
    return dask.delayed(finish, pure=False)(
        fetched, spans, mapped, combined, out=out, storage_options=storage_options,
        dask_key_name=f"finish-{token}")


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
