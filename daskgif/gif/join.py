"""Join GIF frames into one animated GIF, losslessly and streaming (memory: one frame), standard library only.

No frame is decoded: each image's LZW data is copied byte for byte after a fresh Graphic Control Extension
(the requested delay, the input's transparency), its descriptor as it was and its colour table as a local
one, in a ``GIF89a`` with one ``NETSCAPE2.0`` loop block; every other extension of the inputs is dropped.

Disposal, for each frame to look like its stand-alone image: the last image of a frame gets 2 ("restore to
background") when the next image has a transparent colour or does not cover the canvas, else 1 (the last
is judged against the first: it loops); images inside a multi-image input keep theirs.  For "background",
browsers show transparent pixels, Pillow the colour the transparent index names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO, NamedTuple

from daskgif.errors import GifFormatError
from daskgif.gif.parse import GifInfo, ImageInfo, check_pixels, parse_gif, table_size_bits

__all__ = ["Animation", "GifWriter", "join_gifs", "gif_delay"]


def gif_delay(duration_ms: float) -> int:
    """Return *duration_ms* milliseconds as a GIF delay in hundredths of a second, 0 to 65535.

    A positive duration is rounded *up*, so a short one never becomes 0 ("no delay").

    >>> gif_delay(100), gif_delay(105), gif_delay(33.3), gif_delay(15), gif_delay(0.001), gif_delay(0)
    (10, 11, 4, 2, 1, 0)
    >>> gif_delay(10**9)
    65535
    """
    return min(math.ceil(duration_ms / 10), 0xFFFF)


class _Pending(NamedTuple):
    data: memoryview
    info: GifInfo
    image: ImageInfo
    last: bool  # the last image of its input frame


class Animation:
    """What every animation writer shares: ``Writer(out, size, duration=, loop=, max_pixels=)``, a context manager
    whose ``add(gif_bytes)`` appends a frame's images (``_add``) and whose exit or ``close()`` ends the file
    (``_finish``).  *size* is the canvas; *duration* in milliseconds per image; more than *max_pixels* is refused.

    >>> Animation(None, (2, 3), loop=-1)
    Traceback (most recent call last):
    ...
    ValueError: loop must be None or an integer from 0 to 65535, got -1
    """

    format = "GIF"
    largest = 0xFFFF  # the largest width or height the format holds

    def __init__(self, out: BinaryIO, size: tuple[int, int], *, duration: float = 100, loop: int | None = 0,
                 max_pixels: int | None = None):
        width, height = size
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or not 1 <= value <= self.largest:
                raise ValueError(f"size {name} must be an integer from 1 to {self.largest} for {self.format}, "
                                 f"got {value!r}")
        check_pixels("canvas", width, height, max_pixels)
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 <= duration <= 655350:
            raise ValueError(f"duration must be a number of milliseconds from 0 to 655350, got {duration!r}")
        if loop is not None and (isinstance(loop, bool) or not isinstance(loop, int) or not 0 <= loop <= 0xFFFF):
            raise ValueError(f"loop must be None or an integer from 0 to 65535, got {loop!r}")
        self.out, self.size, self.duration, self.loop = out, (width, height), duration, loop
        self.max_pixels = max_pixels
        self.frames = self.images = 0
        self._closed = False

    def __enter__(self) -> Any:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()

    def add(self, frame: bytes | bytearray | memoryview) -> None:
        """Append every image of the GIF *frame*; one that does not fit or decode raises ``GifFormatError``."""
        if self._closed:
            raise ValueError(f"cannot add a frame to a closed {type(self).__name__}")
        self._add(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file. Adding no frame at all is an error."""
        if self._closed:
            return
        if not self.frames:
            raise ValueError(f"no frames were added: {self.format} needs at least one image")
        self._finish()
        self._closed = True

    def _add(self, frame: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError


class GifWriter(Animation):
    """Write an animated GIF frame by frame to the binary stream *out* (not closed), copying image data unchanged.

    *duration* is rounded up to the next 10 ms (:func:`gif_delay`); *loop* is the ``NETSCAPE2.0`` count as
    Pillow reads it: 0 loops forever, N asks for N more plays, ``None`` writes no loop block.

    >>> import io
    >>> from daskgif.gif.encode import encode_gif
    >>> out = io.BytesIO()
    >>> with GifWriter(out, (2, 2), duration=50) as gif:
    ...     gif.add(encode_gif(2, 2, b"\\x00\\x00\\x00\\xff\\xff\\xff", bytes([0, 1, 1, 0])))
    ...     gif.add(encode_gif(1, 1, b"\\xff\\x00\\x00", bytes([0])))
    >>> [(i.width, i.delay, i.disposal) for i in parse_gif(out.getvalue()).images]
    [(2, 5, 2), (1, 5, 1)]
    """

    _pending: _Pending | None = None  # the last image, written once the next one shows its disposal
    _first_needs_clear = False

    def _add(self, frame: bytes | bytearray | memoryview) -> None:
        data = memoryview(frame)
        try:
            info = parse_gif(data, max_pixels=self.max_pixels)
            info.check_fits(self.size)
        except GifFormatError as e:
            raise e.locate(frame=self.frames) from None
        for i, image in enumerate(info.images):
            if self._pending is None:
                self._start()
                self._first_needs_clear = self._needs_clear(image)
            else:
                self._write(self._pending, self._needs_clear(image))
            self._pending = _Pending(data, info, image, i == len(info.images) - 1)

    def _finish(self) -> None:
        assert self._pending is not None  # close() refuses an animation without frames
        self._write(self._pending, self._first_needs_clear)
        self.out.write(b"\x3b")

    def _needs_clear(self, image: ImageInfo) -> bool:
        """Whether the image before *image* must be disposed to the background."""
        width, height = self.size
        covers = image.left == 0 and image.top == 0 and image.width >= width and image.height >= height
        return image.transparent is not None or not covers

    def _start(self) -> None:
        width, height = self.size
        head = bytearray(b"GIF89a")
        head += width.to_bytes(2, "little") + height.to_bytes(2, "little") + b"\x00\x00\x00"
        if self.loop is not None:
            head += b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + self.loop.to_bytes(2, "little") + b"\x00"
        self.out.write(head)

    def _write(self, item: _Pending, next_needs_clear: bool) -> None:
        data, info, image, last = item
        disposal = (2 if next_needs_clear else 1) if last else image.disposal
        table, sort = info.table(image)
        block = bytearray(b"\x21\xf9\x04")
        block.append(disposal << 2 | (image.transparent is not None))
        block += gif_delay(self.duration).to_bytes(2, "little") + bytes([image.transparent or 0, 0, 0x2C])
        for value in (image.left, image.top, image.width, image.height):
            block += value.to_bytes(2, "little")
        block.append(0x80 | image.interlace << 6 | sort << 5 | table_size_bits(table))
        block += table
        self.out.write(block)
        start, end = image.data
        self.out.write(data[start:end])
        self.images += 1


def join_gifs(frames: Iterable[bytes], out: BinaryIO, *, duration: float = 100, loop: int | None = 0,
              size: tuple[int, int] | None = None, max_pixels: int | None = None) -> int:
    """Join GIF *frames*, in order, into one animated GIF written to *out*; return the number of frames joined.

    *duration*, *loop* and *max_pixels* are those of :class:`GifWriter`.  Without *size* (then *frames*
    must be a sequence) the canvas is the largest of the frames' canvases.  A ``GifFormatError`` names the
    frame: one that cannot be joined, or (without *size*) the first that grows the canvas past *max_pixels*.

    >>> import io
    >>> from daskgif.gif.encode import encode_gif
    >>> frames = [encode_gif(4, 2, bytes(6), bytes(8)), encode_gif(2, 3, bytes(6), bytes(6))]
    >>> join_gifs(frames, out := io.BytesIO())
    2
    >>> info = parse_gif(out.getvalue()); (info.width, info.height, len(info.images))
    (4, 3, 2)
    """
    if size is None:
        if not isinstance(frames, Sequence):
            raise ValueError("size is required when frames is not a sequence (the canvas must be known first)")
        if not frames:
            raise ValueError("no frames to join")
        size = (0, 0)
        for i, frame in enumerate(frames):
            try:
                width, height = parse_gif(frame, max_pixels=max_pixels).canvas
                size = (max(size[0], width), max(size[1], height))
                check_pixels("canvas", *size, max_pixels)
            except GifFormatError as e:
                raise e.locate(frame=i) from None
    with GifWriter(out, size, duration=duration, loop=loop, max_pixels=max_pixels) as writer:
        for frame in frames:
            writer.add(frame)
    return writer.frames
