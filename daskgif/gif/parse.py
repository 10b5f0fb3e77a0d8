"""Parse, validate and measure GIF files (87a and 89a), with the standard library only.

:func:`gif_length` walks a GIF block by block to just past its trailer; :func:`parse_gif` also describes
every image, down to the span of its LZW data, which :mod:`daskgif.gif.join` copies unchanged.  The code
stream is walked, never decoded: truncation and bad blocks are caught, not a corrupt stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from daskgif.errors import GifFormatError

__all__ = ["GifInfo", "ImageInfo", "Incomplete", "parse_gif", "gif_length", "table_size_bits", "check_signature",
           "check_pixels"]

EXTENSION, IMAGE, TRAILER = 0x21, 0x2C, 0x3B
GRAPHIC_CONTROL, PLAIN_TEXT = 0xF9, 0x01
SIGNATURES = (b"GIF87a", b"GIF89a")


class Incomplete(GifFormatError):
    """The buffer ended before the GIF did: read more and walk again (at the end of the data, the error itself)."""


@dataclass(frozen=True)
class ImageInfo:
    """One image of a GIF: position, size, interlace bit, local colour table (or ``None``) and sort flag, Graphic
    Control fields (``delay`` in hundredths of a second), ``data``: ``(start, end)`` of its LZW code size and blocks."""

    left: int
    top: int
    width: int
    height: int
    interlace: bool
    local_table: bytes | None
    sort: bool
    disposal: int
    transparent: int | None
    delay: int
    data: tuple[int, int]


@dataclass(frozen=True)
class GifInfo:
    """What :func:`parse_gif` found: the version (``b"89a"``), the logical screen, the global colour table (or
    ``None``) and its sort flag, the background index, every image in order, and the offset just past the trailer."""

    version: bytes
    width: int
    height: int
    global_table: bytes | None
    global_sort: bool
    background: int
    images: tuple[ImageInfo, ...]
    end: int

    @property
    def canvas(self) -> tuple[int, int]:
        """``(width, height)`` of the logical screen grown to hold every image, as decoders show it.

        >>> from daskgif.gif.encode import encode_gif
        >>> parse_gif(encode_gif(2, 2, bytes(6), bytes(4), screen=(3, 1))).canvas
        (3, 2)
        """
        return (max([self.width] + [i.left + i.width for i in self.images]),
                max([self.height] + [i.top + i.height for i in self.images]))

    def table(self, image: ImageInfo) -> tuple[bytes, bool]:
        """Return the colour table *image* is drawn with, and its sort flag."""
        if image.local_table is not None:
            return image.local_table, image.sort
        assert self.global_table is not None  # parse_gif refuses images without a table
        return self.global_table, self.global_sort

    def check_fits(self, size: tuple[int, int]) -> None:
        """Refuse an image that runs past a canvas of *size* (decoders would grow the canvas to hold it)."""
        width, height = size
        for i, image in enumerate(self.images):
            if image.left + image.width > width or image.top + image.height > height:
                raise GifFormatError(
                    f"image {i} at ({image.left}, {image.top}) of {image.width}x{image.height} pixels runs past the "
                    f"canvas of {width}x{height}: give a size that holds it (this frame needs "
                    f"{self.canvas[0]}x{self.canvas[1]})", image.data[0])


def table_size_bits(table: bytes) -> int:
    """Return the 3-bit size field of a colour table of ``3 * 2**(n + 1)`` bytes.

    >>> table_size_bits(bytes(6)), table_size_bits(bytes(768))
    (0, 7)
    """
    return (len(table) // 3).bit_length() - 2


def _u16(buf, pos: int) -> int:
    return buf[pos] | buf[pos + 1] << 8


def _need(buf, pos: int, n: int, what: str) -> None:
    if pos + n > len(buf):
        raise Incomplete(f"truncated in {what}", pos)


def _table(buf, pos: int, flags: int, what: str) -> int:
    """Return the length of the colour table announced by *flags* (0 if none)."""
    if not flags & 0x80:
        return 0
    n = 3 << ((flags & 7) + 1)
    if pos + n > len(buf):
        raise Incomplete(f"{what} of {n} bytes runs past the end (only {len(buf) - pos} left)", pos)
    return n


def _sub_blocks(buf, pos: int, what: str) -> int:
    """Walk data sub-blocks from *pos*; return the offset just past the terminator."""
    try:
        size = buf[pos]
        while size:
            pos += size + 1
            size = buf[pos]
    except IndexError:
        raise Incomplete(f"truncated in {what}", min(pos, len(buf))) from None
    return pos + 1


def check_signature(head: bytes, start: int = 0) -> None:
    """Raise a :class:`~daskgif.errors.GifFormatError` unless *head* is, or may become, ``GIF87a`` or ``GIF89a``,
    quoting all six bytes (never bytes that match what it says it expected).

    >>> check_signature(b"GIF89a"), check_signature(b"GIF")
    (None, None)
    >>> check_signature(b"GIF88a")
    Traceback (most recent call last):
    ...
    daskgif.errors.GifFormatError: at byte 0: unknown GIF version b'GIF88a': expected b'GIF87a' or b'GIF89a'
    """
    head = bytes(head[:6])
    if any(sig.startswith(head) for sig in SIGNATURES):
        return
    if head.startswith(b"GIF"):
        raise GifFormatError(f"unknown GIF version {head!r}: expected b'GIF87a' or b'GIF89a'", start)
    raise GifFormatError(f"not a GIF: expected b'GIF87a' or b'GIF89a', got {head!r}", start)


def check_pixels(what: str, width: int, height: int, max_pixels: int | None, offset: int | None = None) -> None:
    """Refuse *what* of *width* x *height* pixels when it holds more than *max_pixels* (``None``: no limit); equal
    is accepted, as Pillow accepts ``Image.MAX_IMAGE_PIXELS``.

    >>> check_pixels("canvas", 1000, 1001, 10**6, offset=6)
    Traceback (most recent call last):
    ...
    daskgif.errors.GifFormatError: at byte 6: canvas of 1000x1001 pixels is larger than max_pixels=1000000
    """
    if max_pixels is not None and width * height > max_pixels:
        raise GifFormatError(f"{what} of {width}x{height} pixels is larger than max_pixels={max_pixels}", offset)


def gif_length(buf: bytes | bytearray | memoryview, start: int = 0, *, max_pixels: int | None = None,
               images: list[ImageInfo] | None = None) -> int:
    """Walk the GIF that begins at *start* in *buf* block by block; return the offset just past its trailer.

    Only the structure is walked and a screen of more than *max_pixels* refused, unless *images* is a list:
    then the GIF is checked as :func:`parse_gif` says and each image appended to it.  :class:`Incomplete`
    when *buf* ends first (the splitter reads more); a ``GifFormatError``'s ``offset`` is one in *buf*.

    >>> from daskgif.gif.encode import encode_gif
    >>> gif = encode_gif(2, 2, bytes(6), bytes(4))
    >>> gif_length(gif + b"\\n\\n\\n\\n") == len(gif)
    True
    """
    check_signature(buf[start:start + 6], start)
    if start + 13 > len(buf):
        raise Incomplete(f"truncated in header: {len(buf) - start} bytes, a GIF header has 13", start)
    width, height, flags = _u16(buf, start + 6), _u16(buf, start + 8), buf[start + 10]
    parse = images is not None
    if parse and not (width and height):
        raise GifFormatError(f"zero-size logical screen {width}x{height}", start + 6)
    check_pixels("screen", width, height, max_pixels, start + 6)
    pos = start + 13 + _table(buf, start + 13, flags, "global colour table")
    gce: tuple[int, int | None, int] = (0, None, 0)
    canvas = width, height
    while pos < len(buf):
        kind = buf[pos]
        if kind == IMAGE:
            _need(buf, pos, 10, "image descriptor")
            left, top, w, h = (_u16(buf, pos + i) for i in (1, 3, 5, 7))
            iflags = buf[pos + 9]
            if parse:
                if not w or not h:
                    raise GifFormatError(f"image {len(images)} has zero size {w}x{h}", pos + 5)
                check_pixels(f"image {len(images)}", w, h, max_pixels, pos + 5)
                # Decoders (Pillow) grow the canvas to hold an image that runs past the screen.
                canvas = max(canvas[0], left + w), max(canvas[1], top + h)
                check_pixels(f"canvas (grown to hold image {len(images)} at ({left}, {top}))", *canvas, max_pixels,
                             pos + 1)
            data = pos + 10 + _table(buf, pos + 10, iflags, "local colour table")
            if parse and not (iflags | flags) & 0x80:
                raise GifFormatError(f"image {len(images)} has neither a local nor a global colour table", pos)
            _need(buf, data, 1, "image data")
            if parse and not 1 <= buf[data] <= 11:
                raise GifFormatError(f"LZW minimum code size must be 1 to 11, got {buf[data]}", data)
            end = _sub_blocks(buf, data + 1, "image data")
            if parse:
                local = bytes(buf[pos + 10:data]) if iflags & 0x80 else None
                images.append(ImageInfo(left, top, w, h, bool(iflags & 0x40), local, bool(iflags & 0x20), *gce,
                                        (data, end)))
                gce = (0, None, 0)
            pos = end
        elif kind == EXTENSION:
            _need(buf, pos, 2, "extension")
            label = buf[pos + 1]
            if parse and label == GRAPHIC_CONTROL:
                _need(buf, pos, 8, "graphic control extension")
                if buf[pos + 2] != 4:
                    raise GifFormatError(f"graphic control extension of {buf[pos + 2]} bytes, expected 4", pos + 2)
                packed = buf[pos + 3]
                gce = ((packed >> 2) & 7, buf[pos + 6] if packed & 1 else None, _u16(buf, pos + 4))
            elif label == PLAIN_TEXT:
                gce = (0, None, 0)  # a GCE governs the next graphic block, which this is
            pos = _sub_blocks(buf, pos + 2, f"extension 0x{label:02x}")
        elif kind == TRAILER:
            if parse and not images:
                raise GifFormatError("no images before the trailer", pos)
            return pos + 1
        else:
            raise GifFormatError(f"unknown block introducer 0x{kind:02x}", pos)
    raise Incomplete("truncated before the trailer", pos)


def parse_gif(data: bytes | bytearray | memoryview, *, max_pixels: int | None = None) -> GifInfo:
    """Parse and validate a whole GIF, from its signature on (bytes after the trailer are ignored, see ``end``).

    Refused, naming what is wrong and its byte offset: a bad signature, a zero-size screen, no images, an
    image without a colour table, a truncated block, ..., and a screen, image or canvas
    (:attr:`GifInfo.canvas`) of more than *max_pixels* pixels (see :func:`check_pixels`).

    >>> from daskgif.gif.encode import encode_gif
    >>> info = parse_gif(encode_gif(3, 2, bytes(range(12)), bytes([0, 1, 2, 3, 0, 1]), transparent=3))
    >>> info.version, info.width, info.height, len(info.images), info.images[0].transparent
    (b'89a', 3, 2, 1, 3)
    """
    images: list[ImageInfo] = []
    try:
        end = gif_length(data, max_pixels=max_pixels, images=images)
    except Incomplete as e:
        raise GifFormatError(e.message, e.offset) from None
    flags = data[10]
    table = bytes(data[13:13 + _table(data, 13, flags, "global colour table")]) or None
    return GifInfo(bytes(data[3:6]), _u16(data, 6), _u16(data, 8), table, bool(flags & 0x08), data[11],
                   tuple(images), end)
