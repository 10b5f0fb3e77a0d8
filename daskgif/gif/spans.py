"""Frame spans: where each frame lies in an image-data stream, kept compact at any frame count."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, overload

__all__ = ["Span", "Spans"]


class Span(NamedTuple):
    """Where frame *index* lies in the stream: ``length`` bytes from ``offset``."""

    index: int
    offset: int
    length: int


class Spans(Sequence[Span]):
    """Consecutive frame spans, kept compact: two arrays of 64-bit integers, not a tuple per frame.

    A million spans take 16 MB here, and pickle as two byte strings, where a
    list of a million :class:`Span` tuples takes over 100 MB.  Item *i* is the
    span of frame ``first + i``; a slice is a ``Spans`` of its own, so a batch
    of frames travels as its own small piece.

    >>> spans = Spans.from_spans([Span(0, 0, 35), Span(1, 39, 35), Span(2, 78, 40)])
    >>> spans[1], len(spans), list(spans[1:]) == [Span(1, 39, 35), Span(2, 78, 40)]
    (Span(index=1, offset=39, length=35), 3, True)
    >>> spans[1:] == [Span(1, 39, 35), Span(2, 78, 40)], spans[2:].first
    (True, 2)
    """

    __slots__ = ("first", "offsets", "lengths")

    def __init__(self, first: int = 0, offsets: array | None = None, lengths: array | None = None):
        self.first = first
        self.offsets = array("q") if offsets is None else offsets
        self.lengths = array("q") if lengths is None else lengths

    @classmethod
    def from_spans(cls, spans: Iterable[Span]) -> Spans:
        """Gather consecutive *spans* (indices counting up by one from the first's)."""
        out = None
        for span in spans:
            if out is None:
                out = cls(span.index)
            out.append(span)
        return cls() if out is None else out

    def append(self, span: Span) -> None:
        """Add the span of the next frame."""
        if span.index != self.first + len(self.offsets):
            raise ValueError(f"spans must be consecutive: expected index {self.first + len(self.offsets)}, "
                             f"got {span.index}")
        self.offsets.append(span.offset)
        self.lengths.append(span.length)

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, i: int) -> Span: ...

    @overload
    def __getitem__(self, i: slice) -> Spans: ...

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return [self[j] for j in range(start, stop, step)]
            return Spans(self.first + start, self.offsets[start:stop], self.lengths[start:stop])
        n = len(self.offsets)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"span index out of range: {i} of {n}")
        return Span(self.first + i, self.offsets[i], self.lengths[i])

    def __iter__(self) -> Iterator[Span]:
        return map(Span, range(self.first, self.first + len(self.offsets)), self.offsets, self.lengths)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Spans):
            return (self.first, self.offsets, self.lengths) == (other.first, other.offsets, other.lengths)
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        return (Spans, (self.first, self.offsets, self.lengths))

    def __repr__(self) -> str:
        return f"<Spans: {len(self)} frames from index {self.first}>"
