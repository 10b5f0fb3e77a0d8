"""Parse, validate and measure GIF files (87a and 89a), with the standard library only.

Two entry points:

- :func:`parse_gif` reads a whole GIF and returns a :class:`GifInfo` describing every
  image: its Graphic Control fields, its descriptor, its colour table and the span of
  its LZW data, so :mod:`daskgif.gif.join` can copy that data unchanged.
- :func:`gif_length` walks a GIF inside a larger buffer to just past its trailer, as
  fast as Python allows; it raises :class:`Incomplete` when the buffer ends first, so
  the splitter can read more and try again.

The LZW code stream itself is walked, never decoded: a structure walk catches
truncation and bad block introducers, not a corrupt code stream.
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
    """The buffer ended before the GIF did: read more bytes and walk again.

    It is a :class:`~daskgif.errors.GifFormatError` so that, at the end of the data,
    it is simply the error ("truncated in image data").
    """


@dataclass(frozen=True)
class ImageInfo:
    """One image of a GIF: its control fields, descriptor, colour table and data span.

    Attributes
    ----------
    left, top, width, height : int
        The image's position and size on the logical screen.
    interlace : bool
        Rows stored in the four-pass interlaced order.
    local_table : bytes or None
        The image's own colour table, or None when it uses the global one.
    sort : bool
        The local table's sort flag.
    disposal : int
        The Graphic Control disposal method (0 when there is no GCE).
    transparent : int or None
        The transparent colour index, or None.
    delay : int
        The delay in hundredths of a second (0 when there is no GCE).
    data : tuple of int
        ``(start, end)`` of the LZW minimum code size byte and the data sub-blocks,
        including the block terminator.
    """

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
    """What :func:`parse_gif` found in a GIF.

    Attributes
    ----------
    version : bytes
        ``b"87a"`` or ``b"89a"``.
    width, height : int
        The logical screen size.
    global_table : bytes or None
        The global colour table, or None.
    global_sort : bool
        The global table's sort flag.
    background : int
        The background colour index.
    images : tuple of ImageInfo
        Every image, in order.
    end : int
        The offset just past the trailer.
    """

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
    """Raise a :class:`~daskgif.errors.GifFormatError` unless *head* is, or may become, ``GIF87a`` or ``GIF89a``.

    A short *head* that is a prefix of a signature passes (more bytes may follow).
    The message shows all six signature bytes, so it never quotes bytes that match
    what it says it expected.

    >>> check_signature(b"GIF89a"), check_signature(b"GIF")
    (None, None)
    >>> check_signature(b"GIF88a")
    Traceback (most recent call last):
    ...
    daskgif.errors.GifFormatError: at byte 0: unknown GIF version b'GIF88a': expected b'GIF87a' or b'GIF89a'
    >>> check_signature(b"\\x89PNG\\r\\n", 7)
    Traceback (most recent call last):
    ...
    daskgif.errors.GifFormatError: at byte 7: not a GIF: expected b'GIF87a' or b'GIF89a', got b'\\x89PNG\\r\\n'
    """
    head = bytes(head[:6])
    if any(sig.startswith(head) for sig in SIGNATURES):
        return
    if head.startswith(b"GIF"):
        raise GifFormatError(f"unknown GIF version {head!r}: expected b'GIF87a' or b'GIF89a'", start)
    raise GifFormatError(f"not a GIF: expected b'GIF87a' or b'GIF89a', got {head!r}", start)


def check_pixels(what: str, width: int, height: int, max_pixels: int | None, offset: int | None = None) -> None:
    """Refuse *what* of *width* x *height* pixels when it holds more than *max_pixels*.

    The one check of the pixel limit, for the parse, the split's walk and the join:
    equal is accepted (as Pillow accepts ``Image.MAX_IMAGE_PIXELS`` pixels without a
    warning), ``None`` is no limit.

    >>> check_pixels("screen", 1000, 1000, 10**6), check_pixels("screen", 60000, 60000, None)
    (None, None)
    >>> check_pixels("canvas", 1000, 1001, 10**6, offset=6)
    Traceback (most recent call last):
    ...
    daskgif.errors.GifFormatError: at byte 6: canvas of 1000x1001 pixels is larger than max_pixels=1000000
    """
    if max_pixels is not None and width * height > max_pixels:
        raise GifFormatError(f"{what} of {width}x{height} pixels is larger than max_pixels={max_pixels}", offset)


def _header(buf, start: int) -> int:
    """Check the signature and return the logical screen descriptor's flags offset."""
    check_signature(buf[start:start + 6], start)
    _need(buf, start, 13, "header")
    return start + 10


def gif_length(buf: bytes | bytearray | memoryview, start: int = 0, *, max_pixels: int | None = None) -> int:
    """Walk the GIF that begins at *start* in *buf*; return the offset just past its trailer.

    Only the structure is walked: blocks, colour tables and sub-blocks.

    Parameters
    ----------
    buf : bytes-like
        Bytes holding the GIF, possibly followed by anything.
    start : int, optional
        Offset of the GIF's first byte.
    max_pixels : int, optional
        Refuse a logical screen larger than this many pixels (equal is accepted).

    Raises
    ------
    Incomplete
        *buf* ends before the trailer: more bytes are needed.
    GifFormatError
        The bytes are not a GIF; ``offset`` is an offset in *buf*.

    Examples
    --------
    >>> from daskgif.gif.encode import encode_gif
    >>> gif = encode_gif(2, 2, bytes(6), bytes(4))
    >>> gif_length(gif + b"\\n\\n\\n\\n") == len(gif)
    True
    """
    pos = _header(buf, start)
    check_pixels("screen", _u16(buf, start + 6), _u16(buf, start + 8), max_pixels, start + 6)
    pos += 3 + _table(buf, pos + 3, buf[pos], "global colour table")
    n = len(buf)
    while pos < n:
        kind = buf[pos]
        if kind == IMAGE:
            _need(buf, pos, 10, "image descriptor")
            pos += 10
            pos += _table(buf, pos, buf[pos - 1], "local colour table")
            _need(buf, pos, 1, "image data")
            pos = _sub_blocks(buf, pos + 1, "image data")
        elif kind == EXTENSION:
            _need(buf, pos, 2, "extension")
            pos = _sub_blocks(buf, pos + 2, f"extension 0x{buf[pos + 1]:02x}")
        elif kind == TRAILER:
            return pos + 1
        else:
            raise GifFormatError(f"unknown block introducer 0x{kind:02x}", pos)
    raise Incomplete("truncated before the trailer", pos)


def parse_gif(data: bytes | bytearray | memoryview, *, max_pixels: int | None = None) -> GifInfo:
    """Parse and validate a whole GIF.

    Parameters
    ----------
    data : bytes-like
        The GIF, from its signature on; bytes after the trailer are ignored (see ``end``).
    max_pixels : int, optional
        Refuse a logical screen, an image, or the canvas grown to hold the images
        (:attr:`GifInfo.canvas`) larger than this many pixels; equal is accepted,
        as Pillow accepts ``Image.MAX_IMAGE_PIXELS`` pixels without a warning.

    Returns
    -------
    GifInfo

    Raises
    ------
    GifFormatError
        Naming what is wrong and its byte offset: a bad signature, a zero-size screen,
        no images, an image without a colour table, a truncated block, ...

    Examples
    --------
    >>> from daskgif.gif.encode import encode_gif
    >>> info = parse_gif(encode_gif(3, 2, bytes(range(12)), bytes([0, 1, 2, 3, 0, 1]), transparent=3))
    >>> info.version, info.width, info.height, len(info.images), info.images[0].transparent
    (b'89a', 3, 2, 1, 3)
    >>> parse_gif(b"GIF89a\\x00\\x00\\x01\\x00\\x00\\x00\\x00;")
    Traceback (most recent call last):
    ...
    daskgif.errors.GifFormatError: at byte 6: zero-size logical screen 0x1
    """
    try:
        return _parse(data, max_pixels)
    except Incomplete as e:
        raise GifFormatError(e.message, e.offset) from None


def _parse(buf, max_pixels: int | None) -> GifInfo:
    pos = _header(buf, 0)
    version = bytes(buf[3:6])
    width, height, flags, background = _u16(buf, 6), _u16(buf, 8), buf[10], buf[11]
    if not width or not height:
        raise GifFormatError(f"zero-size logical screen {width}x{height}", 6)
    check_pixels("screen", width, height, max_pixels, 6)
    pos = 13
    n = _table(buf, pos, flags, "global colour table")
    global_table = bytes(buf[pos:pos + n]) if n else None
    pos += n
    images: list[ImageInfo] = []
    gce: tuple[int, int | None, int] = (0, None, 0)
    canvas = width, height
    while True:
        _need(buf, pos, 1, "block introducer")
        kind = buf[pos]
        if kind == IMAGE:
            _need(buf, pos, 10, "image descriptor")
            left, top, w, h, iflags = _u16(buf, pos + 1), _u16(buf, pos + 3), _u16(buf, pos + 5), _u16(buf, pos + 7), buf[pos + 9]
            if not w or not h:
                raise GifFormatError(f"image {len(images)} has zero size {w}x{h}", pos + 5)
            check_pixels(f"image {len(images)}", w, h, max_pixels, pos + 5)
            # Decoders (Pillow) grow the canvas to hold an image that runs past the screen.
            canvas = max(canvas[0], left + w), max(canvas[1], top + h)
            check_pixels(f"canvas (grown to hold image {len(images)} at ({left}, {top}))", *canvas, max_pixels, pos + 1)
            pos += 10
            n = _table(buf, pos, iflags, "local colour table")
            local = bytes(buf[pos:pos + n]) if n else None
            if local is None and global_table is None:
                raise GifFormatError(f"image {len(images)} has neither a local nor a global colour table", pos - 10)
            pos += n
            _need(buf, pos, 1, "image data")
            if not 1 <= buf[pos] <= 11:
                raise GifFormatError(f"LZW minimum code size must be 1 to 11, got {buf[pos]}", pos)
            end = _sub_blocks(buf, pos + 1, "image data")
            images.append(ImageInfo(left, top, w, h, bool(iflags & 0x40), local, bool(iflags & 0x20), *gce, (pos, end)))
            gce = (0, None, 0)
            pos = end
        elif kind == EXTENSION:
            _need(buf, pos, 2, "extension")
            label = buf[pos + 1]
            if label == GRAPHIC_CONTROL:
                _need(buf, pos, 8, "graphic control extension")
                if buf[pos + 2] != 4:
                    raise GifFormatError(f"graphic control extension of {buf[pos + 2]} bytes, expected 4", pos + 2)
                packed = buf[pos + 3]
                gce = ((packed >> 2) & 7, buf[pos + 6] if packed & 1 else None, _u16(buf, pos + 4))
            elif label == PLAIN_TEXT:
                gce = (0, None, 0)  # a GCE governs the next graphic block, which this is
            pos = _sub_blocks(buf, pos + 2, f"extension 0x{label:02x}")
        elif kind == TRAILER:
            break
        else:
            raise GifFormatError(f"unknown block introducer 0x{kind:02x}", pos)
    if not images:
        raise GifFormatError("no images before the trailer", pos)
    return GifInfo(version, width, height, global_table, bool(flags & 0x08), background, tuple(images), pos + 1)
