"""The frames a run writes, compact at any frame count: what ``combine``, the manifest and the result need."""

from __future__ import annotations

import bisect
import itertools
import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from daskgif import storage
from daskgif.gif.spans import Spans

__all__ = ["Frame", "FrameTable", "FramePaths"]


class Frame(NamedTuple):
    """A frame written to ``frames_dir``, as the manifest records it: never its bytes."""

    index: int
    offset: int  # its span of the data file: the frame file's bytes, unless converted
    length: int
    size: int  # bytes written, and their hash (daskgif.pipeline.resume.digest): what a rerun checks
    digest: str
    width: int
    height: int
    converted: bool  # converted to GIF: read from its own file


class FrameTable(Spans):
    """The frames of consecutive ``write-frame`` items, compact: 64 bytes a frame, the digest as two integers.

    What a ``write-frame`` batch returns and ``combine`` reads: per item a
    :class:`Frame`, or ``None`` when it was not written.

    >>> t = FrameTable.of([Frame(0, 0, 35, 35, "ab" * 16, 4, 2, False), None])
    >>> t[0].digest == "ab" * 16, t[1], t.size, list(t.indices())
    (True, None, (4, 2), [0])
    """

    STRIDE = 8
    __slots__ = ()

    def pack(self, frame: Frame | None) -> Iterable[int]:
        if frame is None:
            return (0, 0, 0, -1, 0, 0, 0, 0)  # width -1: not written
        return (*frame[1:4], *frame[5:], *array("q", bytes.fromhex(frame.digest)))

    def unpack(self, index: int, values: Sequence[int]) -> Frame | None:
        offset, length, size, width, height, converted, *digest = values
        if width < 0:
            return None
        return Frame(index, offset, length, size, array("q", digest).tobytes().hex(), width, height, bool(converted))

    @property
    def size(self) -> tuple[int, int]:
        """The largest width and height of the written frames."""
        return max(self.values[3::self.STRIDE], default=0), max(self.values[4::self.STRIDE], default=0)

    def written(self) -> Iterator[Frame]:
        """Every written frame, in order."""
        return (frame for frame in self if frame is not None)

    def indices(self) -> Iterator[int]:
        """The index of every written frame, in order."""
        return (self.first + i for i, width in enumerate(self.values[3::self.STRIDE]) if width >= 0)


class FramePaths(Sequence):
    """Frame files of a run, compact: ``frames_dir/frame_NN.gif`` for indices kept as ``(start, stop)`` ranges.

    ``Result.frames`` (the frames a run wrote) and the frames a rerun may keep:
    a few pairs at any frame count, while frames are mostly consecutive.  As
    JSON (:meth:`to_json`) it is the list of paths while that list stays under
    :data:`JSON_LIST_LIMIT` characters, else a count and the name pattern.

    >>> paths = FramePaths.of("out", 12, [0, 1, 2, 5, 7, 8])
    >>> paths.pairs, paths.holds(2), paths.holds(3), len(paths), paths[3], paths[-1]
    (((0, 3), (5, 6), (7, 9)), True, False, 6, 'out/frame_05.gif', 'out/frame_08.gif')
    >>> FramePaths("f", 200_000).to_json()["pattern"]
    'f/frame_{index:06d}.gif'
    """

    JSON_LIST_LIMIT = 16_000
    __slots__ = ("frames_dir", "count", "pairs", "ends")

    def __init__(self, frames_dir: str, count: int, pairs: Iterable[tuple[int, int]] | None = None):
        self.frames_dir, self.count = frames_dir, count
        self.pairs = ((0, count),) if pairs is None else tuple((int(a), int(b)) for a, b in pairs)
        self.ends = list(itertools.accumulate(b - a for a, b in self.pairs))  # the position after each range

    @classmethod
    def of(cls, frames_dir: str, count: int, indices: Iterable[int]) -> FramePaths:
        """The files of the frames *indices* (increasing) of a run of *count* frames."""
        pairs: list[list[int]] = []
        for i in indices:
            if pairs and pairs[-1][1] == i:
                pairs[-1][1] = i + 1
            else:
                pairs.append([i, i + 1])
        return cls(frames_dir, count, pairs)

    def __reduce__(self) -> Any:
        return (FramePaths, (self.frames_dir, self.count, self.pairs))

    def holds(self, index: int) -> bool:
        """Whether frame *index* is one of these."""
        at = bisect.bisect_right(self.pairs, (index, math.inf)) - 1
        return at >= 0 and index < self.pairs[at][1]

    def path(self, index: int) -> str:
        """The file of frame *index*."""
        return storage.join_path(self.frames_dir, storage.frame_name(index, self.count))

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        at = bisect.bisect_right(self.ends, i)
        return self.path(self.pairs[at][1] - (self.ends[at] - i))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (FramePaths, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<FramePaths: {len(self)} of {self.count} frames in {self.frames_dir!r}>"

    def to_json(self) -> list[str] | dict[str, Any]:
        """The paths as a list, or when that is long ``{"count", "pattern", "first", "last", ...}``."""
        if not len(self) or len(self) * (len(self[-1]) + 4) <= self.JSON_LIST_LIMIT:
            return list(self)
        width = len(storage.frame_name(self.count - 1, self.count)) - len("frame_.gif")
        found = {"count": len(self), "pattern": storage.join_path(self.frames_dir, f"frame_{{index:0{width}d}}.gif"),
                 "first": self[0], "last": self[-1]}
        if len(self) < self.count:
            edges = (0, *itertools.chain(*self.pairs), self.count)  # the gaps: edges[0:2], edges[2:4], ...
            missing = itertools.chain(*map(range, edges[::2], edges[1::2]))
            found["not_written"] = {"count": self.count - len(self), "first": list(itertools.islice(missing, 100))}
        return found
