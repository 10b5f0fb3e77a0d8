"""The frames a run writes, compact: what ``combine`` and the result need, without frame bytes."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from daskgif import storage
from daskgif.gif.split import Span


@dataclass(frozen=True)
class Frame:
    """A frame written to ``frames_dir``: what ``combine`` needs, without its bytes."""

    index: int
    path: str
    width: int
    height: int
    span: Span | None = None  # where its bytes lie in the data file; None for a converted frame
    size: int = 0  # bytes written, and their hash (daskgif.pipeline.resume.digest): what a rerun checks
    digest: str = ""


class FrameTable(Sequence):
    """The frames of consecutive ``write-frame`` items, compact: a few arrays, not a :class:`Frame` per frame.

    What a ``write-frame`` batch returns (see :meth:`~daskgif.Task.map`'s
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
    DIGEST = 16  # bytes of a frame's hash (daskgif.pipeline.resume.digest)

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

