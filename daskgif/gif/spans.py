"""Frame spans: where each frame lies in an image-data stream, kept compact at any frame count."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

__all__ = ["Span", "Spans"]


class Span(NamedTuple):
    """Where frame *index* lies in the stream: ``length`` bytes from ``offset``."""

    index: int
    offset: int
    length: int


class Spans(Sequence):
    """Facts about consecutive frames in one array of 64-bit integers (a million spans: 16 MB, pickled as one byte
    string): item *i* is the :class:`Span` of frame ``first + i``; a slice is a table of its own (a batch),
    :meth:`concat` joins them.  A subclass keeps :data:`STRIDE` integers per frame (:meth:`pack`, :meth:`unpack`).

    >>> spans = Spans.of([Span(0, 0, 35), Span(1, 39, 35), Span(2, 78, 40)])
    >>> spans[1], len(spans), spans[1:] == [Span(1, 39, 35), Span(2, 78, 40)], spans[2:].first
    (Span(index=1, offset=39, length=35), 3, True, 2)
    """

    STRIDE = 2
    __slots__ = ("first", "values")

    def __init__(self, first: int = 0, values: array | None = None):
        self.first, self.values = first, array("q") if values is None else values

    @classmethod
    def of(cls, items: Iterable[Any], first: int = 0) -> Any:
        """The table of *items*, the facts of frames ``first``, ``first + 1``, ..."""
        table = cls(first)
        for item in items:
            table.append(item)
        return table

    @classmethod
    def concat(cls, parts: Sequence[Spans]) -> Any:
        """Join the tables of consecutive batches."""
        values = array("q")
        for part in parts:
            values.extend(part.values)
        return cls(parts[0].first, values)

    def pack(self, item: Any) -> Iterable[int]:
        """The integers that keep *item*."""
        return item[1:]

    def unpack(self, index: int, values: Sequence[int]) -> Any:
        """The item of frame *index*, from its integers."""
        return Span(index, *values)

    def append(self, item: Any) -> None:
        """Add the next frame's item."""
        self.values.extend(self.pack(item))

    def __len__(self) -> int:
        return len(self.values) // self.STRIDE

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return [self[j] for j in range(start, stop, step)]
            return type(self)(self.first + start, self.values[start * self.STRIDE:stop * self.STRIDE])
        i = range(len(self))[i]
        return self.unpack(self.first + i, self.values[i * self.STRIDE:(i + 1) * self.STRIDE])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Spans, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self)} frames from index {self.first}>"
