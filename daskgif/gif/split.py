"""Split an image-data stream into frame spans, with the standard library only.

Frames are joined by a delimiter (four newlines by default; one of LF bytes is also recognised with each LF
as CR LF).  The split is *structure aware*: a GIF is walked to its trailer and a PNG to its ``IEND``, so
delimiter bytes inside a palette or compressed data never cut a frame; other images (JPEG, BMP, TIFF,
WebP, ICO) end at the next delimiter.  Delimiters and ASCII whitespace between frames are skipped.

Refused, naming the frame and the byte offset: a piece without a known image signature, anything but
separators after a walked frame, and a walk that runs over a delimiter followed by a *whole* image (the
frame is corrupt or truncated before it: damaged blocks must not swallow the frames after it).  With
``on_error="skip"`` such a piece ends at the next delimiter followed by an image signature or the end of
the data, and is yielded as it is, for the frame's own task to refuse.  Memory: about one frame plus one chunk.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

from daskgif.errors import GifFormatError
from daskgif.gif.parse import Incomplete, gif_length
from daskgif.gif.spans import Span, Spans

__all__ = ["DELIMITER", "Span", "Spans", "split_frames", "split_bytes", "image_kind"]

#: What separates frames in the data file, unless told otherwise: four newlines, as in the original example.
DELIMITER = b"\n\n\n\n"

WHITESPACE = frozenset(b" \t\r\n")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAGIC = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (PNG_SIGNATURE, "PNG"), (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x01\x00", "ICO"),
)


def image_kind(head: bytes) -> str | None:
    """Return the image format whose signature *head* begins with, or ``None``.

    >>> image_kind(b"GIF89a..."), image_kind(b"RIFF\\x00\\x00\\x00\\x00WEBPVP8 "), image_kind(b"hello")
    ('GIF', 'WebP', None)
    """
    head = bytes(head[:12])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in MAGIC if head.startswith(magic)), None)


def unknown_signature(head: bytes) -> str:
    """Say what a piece with no known image signature begins with (never quoting too little), and what was expected.

    >>> unknown_signature(b"GIF88a\\x01\\x00")
    "unknown GIF version b'GIF88a': expected b'GIF87a' or b'GIF89a'"
    >>> unknown_signature(b"RIFF\\x00\\x00\\x00\\x00WAVEfmt ")
    "a RIFF file that is not WebP: expected b'WEBP' at byte 8, got b'WAVE'"
    >>> unknown_signature(b"\\x00\\x01garbage and more")
    "not an image: expected b'GIF8' or another image signature, got b'\\\\x00\\\\x01garbag'"
    """
    head = bytes(head[:12])
    if head.startswith(b"GIF"):
        return f"unknown GIF version {head[:6]!r}: expected b'GIF87a' or b'GIF89a'"
    if head.startswith(b"\x89PNG"):
        return f"bad PNG signature {head[:8]!r}: expected {PNG_SIGNATURE!r}"
    if head.startswith(b"RIFF") and len(head) >= 12:
        return f"a RIFF file that is not WebP: expected b'WEBP' at byte 8, got {head[8:12]!r}"
    return f"not an image: expected b'GIF8' or another image signature, got {head[:8]!r}"


def png_length(buf: bytes | bytearray | memoryview, start: int = 0) -> int:
    """Walk the PNG at *start* chunk by chunk; return the offset past its ``IEND`` (``Incomplete``: *buf* ends first).

    >>> png = PNG_SIGNATURE + b"\\x00\\x00\\x00\\x00IEND\\xaeB`\\x82"
    >>> png_length(png + b"\\n\\n\\n\\n") == len(png)
    True
    """
    pos = start + 8
    while True:
        if pos + 8 > len(buf):
            raise Incomplete("truncated in PNG chunk header", min(pos, len(buf)))
        length = int.from_bytes(buf[pos:pos + 4], "big")
        kind = bytes(buf[pos + 4:pos + 8])
        if length > 0x7FFFFFFF or not kind.isalpha():
            raise GifFormatError(f"bad PNG chunk: type {kind!r}, length {length}", pos)
        pos += 12 + length
        if kind == b"IEND":
            if pos > len(buf):
                raise Incomplete("truncated in PNG IEND chunk", len(buf))
            return pos


class _Buffer:
    """A window on a stream: ``buf`` holds the bytes from absolute offset ``base`` on, and never drops
    those from ``hold`` on (the piece being read, so a failed walk can be rescanned)."""

    def __init__(self, f: BinaryIO, chunk_size: int):
        self.f, self.chunk_size = f, chunk_size
        self.buf, self.base, self.hold, self.eof = bytearray(), 0, 0, False

    def more(self, keep: int, at_least: int = 0) -> None:
        """Drop the bytes before *keep* (not ``hold``) and read a chunk, or *at_least*: once per read, linear cost."""
        keep = max(self.base, min(keep, self.hold))
        del self.buf[:keep - self.base]
        self.base = keep
        data = self.f.read(max(self.chunk_size, at_least))
        self.buf += data
        self.eof = not data

    def ensure(self, pos: int, n: int) -> int:
        """Read until *n* bytes from absolute *pos* are held or the stream ends; return *pos* in ``buf``."""
        while self.base + len(self.buf) < pos + n and not self.eof:
            self.more(pos)
        return pos - self.base


def split_frames(f: BinaryIO, delimiter: bytes = DELIMITER, *, chunk_size: int = 4 * 2**20,
                 max_pixels: int | None = None, on_error: str = "raise") -> Iterator[Span]:
    """Yield the span of every frame in the image-data stream *f*, in order (see the module's rules).

    *f* is read in chunks from its current position, where offsets start; a GIF whose screen is larger
    than *max_pixels* is refused.

    >>> from daskgif.gif.encode import encode_gif
    >>> gif = encode_gif(2, 2, b"\\n" * 6, bytes(4))  # its palette is six newlines
    >>> list(split_frames(io.BytesIO(gif + b"\\n\\n\\n\\n" + gif)))
    [Span(index=0, offset=0, length=35), Span(index=1, offset=39, length=35)]
    >>> list(split_frames(io.BytesIO(gif + b"\\r\\n\\r\\n\\r\\n\\r\\n" + b"junk"), on_error="skip"))
    [Span(index=0, offset=0, length=35), Span(index=1, offset=43, length=4)]
    """
    if not isinstance(delimiter, bytes) or not delimiter:
        raise ValueError(f"delimiter must be non-empty bytes, got {delimiter!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    delimiters = (delimiter,)
    if b"\n" in delimiter and b"\r" not in delimiter:  # also its Windows form, CR LF for each LF
        delimiters += (delimiter.replace(b"\n", b"\r\n"),)
    stream = _Buffer(f, chunk_size)
    index = pos = 0  # pos, start and end are absolute offsets in the stream
    while True:
        stream.hold = pos
        pos = _skip_separators(stream, pos, delimiters)
        if pos is None:
            break
        start = stream.hold = pos
        try:
            end, pos = _read_frame(stream, start, delimiters, index, max_pixels)
        except GifFormatError as e:
            if on_error != "skip":
                raise _explain(e, stream, start, delimiters) from None
            # The frame's own task reads the damaged piece and reports it; the next frame is kept.
            end = pos = _resync(stream, start, delimiters)
        yield Span(index, start, end - start)
        index += 1
    if not index:
        size = stream.base + len(stream.buf)
        got = "an empty stream" if not size else "only delimiters and whitespace"
        raise GifFormatError(f"no frames found in {size} bytes: expected an image signature, got {got}", size, 0)


def _read_frame(stream: _Buffer, start: int, delimiters: tuple[bytes, ...], index: int,
                max_pixels: int | None) -> tuple[int, int]:
    """Read the frame at *start*; return its end and the offset after its delimiter."""
    rel = stream.ensure(start, 12)
    kind = image_kind(stream.buf[rel:rel + 12])
    if kind is None:
        raise GifFormatError(unknown_signature(stream.buf[rel:rel + 12]), start, index)
    if kind not in ("GIF", "PNG"):
        end = _find_delimiter(stream, start, delimiters)
        return end, end
    end = _walk(stream, start, kind, index, max_pixels, delimiters)
    return end, _after_frame(stream, end, delimiters, index)


def _resync(stream: _Buffer, start: int, delimiters: tuple[bytes, ...]) -> int:
    """Return where the damaged piece at *start* ends: at the first delimiter followed, past separators,
    by an image signature or the end of the data, else at the end of the data (holding about a chunk)."""
    search = start
    while True:
        stream.hold = search
        cut = _find_delimiter(stream, search, delimiters)
        stream.hold = cut
        after = _skip_separators(stream, cut, delimiters)
        if after is None:
            return cut
        rel = stream.ensure(after, 12)
        if image_kind(stream.buf[rel:rel + 12]) is not None:
            return cut
        search = after


def frame_inside(buf: bytes | bytearray, start: int, end: int, delimiters: tuple[bytes, ...],
                 max_pixels: int | None = None, *, open_end: bool = False) -> tuple[int, int] | None:
    """Find a delimiter inside the frame ``buf[start:end]`` followed by a whole GIF or PNG (walked to a delimiter,
    or to *end* unless *open_end*); return both offsets.  Four newlines in a frame are common, not so an image.

    >>> from daskgif.gif.encode import encode_gif
    >>> gif = encode_gif(1, 1, b"\\n" * 6, bytes(1))  # a colour table of six newlines
    >>> frame_inside(gif, 0, len(gif), (b"\\n\\n\\n\\n",)) is None
    True
    >>> two = gif[:-1] + b"\\n\\n\\n\\n" + gif  # the first lost its trailer: it runs on over the second
    >>> frame_inside(two, 0, len(two), (b"\\n\\n\\n\\n",)) == (len(gif) - 1, len(gif) + 3)
    True
    >>> frame_inside(two, 0, len(two), (b"\\n\\n\\n\\n",), open_end=True) is None  # no delimiter after it yet
    True
    """
    found = {d: buf.find(d, start + 1, end) for d in delimiters}
    while True:
        cut = min((i for i in found.values() if i >= 0), default=-1)
        if cut < 0:
            return None
        image = _past_separators(buf, cut, end, delimiters)
        if image_kind(buf[image:image + 12]) in ("GIF", "PNG") and \
                _whole_image(bytes(buf[image:end]), delimiters, max_pixels, open_end):
            return cut, image
        search = max(image, cut + 1)  # a form not found before is not found after: search again only the others
        found = {d: buf.find(d, search, end) if 0 <= i < search else i for d, i in found.items()}


def _past_separators(buf: bytes | bytearray, pos: int, end: int, delimiters: tuple[bytes, ...]) -> int:
    """Return the offset of the first byte at or after *pos*, before *end*, that no separator covers."""
    while pos < end:
        if buf[pos] in WHITESPACE:
            pos += 1
            continue
        found = next((d for d in delimiters if buf.startswith(d, pos)), None)
        if found is None:
            break
        pos += len(found)
    return pos


def _whole_image(piece: bytes, delimiters: tuple[bytes, ...], max_pixels: int | None, open_end: bool) -> bool:
    """Whether the GIF or PNG *piece* begins with walks to a delimiter, or to its end unless *open_end*."""
    try:
        stop = gif_length(piece, max_pixels=max_pixels) if image_kind(piece) == "GIF" else png_length(piece)
    except GifFormatError:  # Incomplete too: an image that runs past *piece* is not whole in it
        return False
    return (stop == len(piece) and not open_end) or any(piece.startswith(d, stop) for d in delimiters)


def _explain(e: GifFormatError, stream: _Buffer, start: int, delimiters: tuple[bytes, ...]) -> GifFormatError:
    """Add where the frame began to *e* when its walk ran on past a delimiter (a truncated frame, likely)."""
    rel = start - stream.base
    if e.offset is None or e.offset <= start or rel < 0:
        return e
    found = [i for i in (stream.buf.find(d, rel, e.offset - stream.base) for d in delimiters) if i >= 0]
    if not found:
        return e
    cut = stream.base + min(found)
    return GifFormatError(f"{e.message} (the frame begins at byte {start} and its blocks run on past a "
                          f"delimiter at byte {cut}: truncated or corrupt before it?)", e.offset, e.frame)


def _find_delimiter(stream: _Buffer, start: int, delimiters: tuple[bytes, ...]) -> int:
    """Return the offset of the first of *delimiters* after *start*, or the end of the data."""
    search = start
    longest = max(len(d) for d in delimiters)
    while True:
        found = [i for i in (stream.buf.find(d, search - stream.base) for d in delimiters) if i >= 0]
        if found:
            return stream.base + min(found)
        if stream.eof:
            return stream.base + len(stream.buf)
        search = max(start, stream.base + len(stream.buf) - longest + 1)
        stream.more(search)


def _skip_separators(stream: _Buffer, pos: int, delimiters: tuple[bytes, ...]) -> int | None:
    """Return the offset of the next frame at or after *pos*, or None at the end of the data."""
    need = max(max(len(d) for d in delimiters), 12)
    while True:
        rel = stream.ensure(pos, need)
        held = len(stream.buf)
        past = _past_separators(stream.buf, rel, held, delimiters)
        pos = stream.base + past
        if past + need <= held or stream.eof:  # else a delimiter may run past the bytes held
            return pos if past < held else None


def _walk(stream: _Buffer, start: int, kind: str, index: int, max_pixels: int | None,
          delimiters: tuple[bytes, ...]) -> int:
    """Walk the GIF or PNG at *start* to its end, reading more as needed; return its end.

    A delimiter followed by a whole image inside what it walked makes it fail (:func:`frame_inside`) as
    soon as the bytes held show it: a corrupt frame reads little further than the next one.
    """
    def refuse_inside(end: int, open_end: bool = False) -> None:
        found = frame_inside(stream.buf, start - stream.base, end - stream.base, delimiters, max_pixels,
                             open_end=open_end)
        if found is not None:
            cut, image = (stream.base + i for i in found)
            raise GifFormatError(f"expected the frame to end at the delimiter at byte {cut}, which a whole image "
                                 f"follows at byte {image}; got blocks that run on past it: corrupt or truncated "
                                 f"before it?", start, index)

    while True:
        rel, held = start - stream.base, stream.base + len(stream.buf)
        try:
            end = stream.base + (gif_length(stream.buf, rel, max_pixels=max_pixels) if kind == "GIF"
                                 else png_length(stream.buf, rel))
        except Incomplete as e:
            refuse_inside(held, open_end=not stream.eof)
            if stream.eof:
                raise GifFormatError(e.message, e.offset).locate(index, stream.base) from None
            # Read at least as much again as is held, so a big frame is walked O(log n) times.
            stream.more(start, len(stream.buf) - rel)
            continue
        except GifFormatError as e:
            located = e.locate(index, stream.base)
            refuse_inside(min(located.offset, held), open_end=True)
            raise located from None
        refuse_inside(end)
        return end


def _after_frame(stream: _Buffer, end: int, delimiters: tuple[bytes, ...], index: int) -> int:
    """Check that separators with a delimiter among them, or to the end of the data, follow a frame ending at *end*."""
    after = _skip_separators(stream, end, delimiters)
    if after is None or any(d in stream.buf[end - stream.base:after - stream.base] for d in delimiters):
        return end if after is None else after
    # Quote past the delimiter's length, so a near-miss never reads as the delimiter itself.
    want = max(8, len(delimiters[0]) + 4)
    rel = stream.ensure(end, want)
    raise GifFormatError(f"expected the delimiter {delimiters[0]!r} or the end of the data after the frame, "
                         f"got {bytes(stream.buf[rel:rel + want])!r}", end, index)


def split_bytes(data: bytes | bytearray | memoryview, delimiter: bytes = DELIMITER, **kwargs) -> list[Span]:
    """Return the frame spans of *data*; the keywords are those of :func:`split_frames`.

    >>> from daskgif.gif.encode import encode_gif
    >>> gif = encode_gif(1, 1, bytes(3), bytes(1))
    >>> [s.length for s in split_bytes(gif + b"\\n\\n\\n\\n" + gif + b"\\n\\n\\n\\n")]
    [35, 35]
    """
    return list(split_frames(io.BytesIO(data), delimiter, **kwargs))
