"""Writers of the outputs that are not GIF: animated WebP, APNG and MP4, one frame at a time.

Every writer has the interface of ``daskgif.gif.join.GifWriter``:
``Writer(out, size, duration=, loop=, max_pixels=)``, a context manager whose
``add(gif_bytes)`` appends one GIF frame and whose exit (or ``close()``) finishes
the file.  Each frame is decoded once, when it is added, to RGBA at canvas size
(:func:`daskgif.codec.canvas_images`: as a GIF viewer shows it, transparency and
frames smaller than the canvas included), written, and dropped.

**Streaming.** Pillow's own animated WebP and APNG savers want every frame at
once (``save_all``; ``append_images`` is made a list, and the APNG saver keeps every
frame until the end), and so does imageio's Pillow plugin.  So the WebP and APNG
containers are written here, chunk by chunk, from frames Pillow encodes one at a
time; the header fields that need the end (the RIFF size, the APNG frame count) are
filled in when the file is closed, so *out* must be seekable.  Memory holds the
previous frame and the current one, whatever the frame count.  Each frame after
the first stores only the rectangle that changed (no blending, no disposal).  MP4
frames go to ffmpeg through a pipe (imageio with ``imageio-ffmpeg``), which writes
a temporary file that imageio copies into *out* at the end: the finished video is
held in memory once, at its compressed size.

**Duration and loop.** WebP stores milliseconds per frame, APNG a fraction of a
second; both store the loop count as given (0 forever; ``None`` plays once).  MP4
has a frame rate, ``1000 / duration``, and no loop.
"""

from __future__ import annotations

import io
import struct
import zlib
from fractions import Fraction
from typing import Any, BinaryIO

from daskgif.codec import canvas_images
from daskgif.errors import GifFormatError
from daskgif.gif.join import check_animation

__all__ = ["WebpWriter", "ApngWriter", "Mp4Writer", "apng_delay"]


class FrameWriter:
    """What the writers share: checked arguments, frame decoding, the context manager.

    A subclass writes each canvas with ``_write(image, box)``, where *box* is the
    rectangle that changed since the previous image, and finishes with ``_finish()``.
    """

    format = "animation"
    largest = 0xFFFF  # the largest width or height the format holds

    def __init__(self, out: BinaryIO, size: tuple[int, int], *, duration: float = 100, loop: int | None = 0,
                 max_pixels: int | None = None):
        width, height = check_animation(size, duration, loop, max_pixels, self.largest, self.format)
        self.out, self.size, self.duration, self.loop = out, (width, height), duration, loop
        self.max_pixels = max_pixels
        self.frames = self.images = 0
        self._previous: Any = None
        self._closed = False

    @classmethod
    def check(cls, *, duration: float) -> None:
        """Refuse, before any work, what this writer cannot write (a missing extra, a duration)."""

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()

    def add(self, frame: bytes | bytearray | memoryview) -> None:
        """Append every image of the GIF *frame*, decoded at canvas size.

        Raises :class:`~daskgif.errors.GifFormatError` naming the frame's index when
        *frame* is not a GIF that fits the canvas, or does not decode.
        """
        if self._closed:
            raise ValueError(f"cannot add a frame to a closed {type(self).__name__}")
        for image in canvas_images(frame, self.size, index=self.frames, max_pixels=self.max_pixels):
            self._write(image, self._changed(image))
            self._previous = image
            self.images += 1
        self.frames += 1

    def close(self) -> None:
        """Finish the file. Adding no frame at all is an error."""
        if self._closed:
            return
        if not self.images:
            raise ValueError(f"no frames were added: {self.format} needs at least one image")
        self._finish()
        self._closed = True

    def _changed(self, image: Any) -> tuple[int, int, int, int]:
        """The box of *image* that differs from the previous image (all of the first; one pixel if none)."""
        if self._previous is None:
            return (0, 0, *self.size)
        from PIL import ImageChops

        return ImageChops.difference(image, self._previous).getbbox(alpha_only=False) or (0, 0, 1, 1)

    def _write(self, image: Any, box: tuple[int, int, int, int]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _seekable_start(self) -> int:
        if not self.out.seekable():
            raise ValueError(f"{self.format} is finished by seeking back to its header: give a seekable file")
        return self.out.tell()


def _chunks(data: bytes, start: int, *, crc: bool) -> list[tuple[bytes, bytes]]:
    """``(type, payload)`` of each chunk of a RIFF (little endian, padded) or PNG (big endian, CRC) stream.

    >>> _chunks(b"VP8L\\x01\\x00\\x00\\x00x\\x00ALPH\\x00\\x00\\x00\\x00", 0, crc=False)
    [(b'VP8L', b'x'), (b'ALPH', b'')]
    """
    found = []
    while start + 8 <= len(data):
        if crc:
            (length,), kind = struct.unpack(">I", data[start:start + 4]), data[start + 4:start + 8]
        else:
            kind, (length,) = data[start:start + 4], struct.unpack("<I", data[start + 4:start + 8])
        found.append((kind, data[start + 8:start + 8 + length]))
        start += 8 + length + (4 if crc else length % 2)
    return found


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) % 2)


def _u24(value: int) -> bytes:
    return value.to_bytes(3, "little")


class WebpWriter(FrameWriter):
    """Write a lossless animated WebP (``VP8X``, ``ANIM``, one ``ANMF`` per image), frame by frame.

    Frames are encoded by Pillow, lossless with ``exact`` (the colour of transparent
    pixels is kept).  Arguments as for ``daskgif.gif.join.GifWriter``;
    *duration* is stored in whole milliseconds, *loop* as the WebP loop count (0
    forever; None: 1, played once).  *out* must be seekable.

    Examples
    --------
    >>> from PIL import Image
    >>> from daskgif.gif.encode import encode_gif
    >>> out = io.BytesIO()
    >>> with WebpWriter(out, (2, 2), duration=50, loop=3) as webp:
    ...     webp.add(encode_gif(2, 2, b"\\x00\\x00\\x00\\xff\\xff\\xff", bytes([0, 1, 1, 0])))
    ...     webp.add(encode_gif(1, 1, b"\\xff\\x00\\x00", bytes([0])))
    >>> im = Image.open(out); _ = im.load(); im.n_frames, im.info["loop"], im.info["duration"]
    (2, 3, 50)
    >>> im.seek(1); im.convert("RGBA").getpixel((0, 0)), im.convert("RGBA").getpixel((1, 1))
    ((255, 0, 0, 255), (0, 0, 0, 0))
    """

    format = "WebP"
    largest = 16384

    def __init__(self, out: BinaryIO, size: tuple[int, int], **kwargs: Any):
        super().__init__(out, size, **kwargs)
        self._start = self._seekable_start()
        self._alpha = False
        width, height = self.size
        loop = 1 if self.loop is None else self.loop
        self.out.write(b"RIFF\x00\x00\x00\x00WEBP" + _riff_chunk(b"VP8X", bytes(4) + _u24(width - 1) + _u24(height - 1))
                       + _riff_chunk(b"ANIM", bytes(4) + struct.pack("<H", loop)))

    def _write(self, image: Any, box: tuple[int, int, int, int]) -> None:
        left, top = box[0] - box[0] % 2, box[1] - box[1] % 2  # WebP stores offsets halved
        piece = image.crop((left, top, box[2], box[3]))
        self._alpha = self._alpha or piece.getextrema()[3][0] < 255
        encoded = io.BytesIO()
        piece.save(encoded, "WEBP", lossless=True, exact=True)
        frame = b"".join(_riff_chunk(kind, payload) for kind, payload in _chunks(encoded.getvalue(), 12, crc=False)
                         if kind in (b"ALPH", b"VP8 ", b"VP8L"))
        head = (_u24(left // 2) + _u24(top // 2) + _u24(piece.width - 1) + _u24(piece.height - 1)
                + _u24(min(round(self.duration), 0xFFFFFF)) + b"\x02")  # 0b10: do not blend, do not dispose
        self.out.write(_riff_chunk(b"ANMF", head + frame))

    def _finish(self) -> None:
        end = self.out.tell()
        self.out.seek(self._start + 4)
        self.out.write(struct.pack("<I", end - self._start - 8))
        self.out.seek(self._start + 20)  # the VP8X flags: animation, and alpha if any image has it
        self.out.write(bytes([0x02 | (0x10 if self._alpha else 0)]))
        self.out.seek(end)


def apng_delay(duration_ms: float) -> tuple[int, int]:
    """Return *duration_ms* as an APNG delay ``(numerator, denominator)`` of a second, 16 bits each.

    >>> apng_delay(100), apng_delay(33.3), apng_delay(70000), apng_delay(655350)
    ((100, 1000), (33, 1000), (7000, 100), (65535, 100))
    """
    for den in (1000, 100, 10, 1):
        num = round(duration_ms * den / 1000)
        if num <= 0xFFFF:
            return num, den
    raise ValueError(f"duration must be at most 65535 seconds, got {duration_ms!r} ms")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


class ApngWriter(FrameWriter):
    """Write an animated PNG (APNG, RGBA, 8 bits), frame by frame.

    Frames are compressed by Pillow's PNG encoder.  Arguments as for
    ``daskgif.gif.join.GifWriter``; *duration* is stored as a fraction of a
    second (:func:`apng_delay`), *loop* as the APNG play count (0 forever; None: 1,
    played once).  *out* must be seekable: the frame count is written at the end.

    Examples
    --------
    >>> from PIL import Image
    >>> from daskgif.gif.encode import encode_gif
    >>> out = io.BytesIO()
    >>> with ApngWriter(out, (2, 2), duration=50, loop=3) as png:
    ...     png.add(encode_gif(2, 2, b"\\x00\\x00\\x00\\xff\\xff\\xff", bytes([0, 1, 1, 0])))
    ...     png.add(encode_gif(1, 1, b"\\xff\\x00\\x00", bytes([0])))
    >>> im = Image.open(out); im.n_frames, im.info["loop"], im.info["duration"]
    (2, 3, 50.0)
    >>> im.seek(1); im.convert("RGBA").getpixel((0, 0)), im.convert("RGBA").getpixel((1, 1))
    ((255, 0, 0, 255), (0, 0, 0, 0))
    """

    format = "APNG"
    largest = 0x7FFFFFFF

    def __init__(self, out: BinaryIO, size: tuple[int, int], **kwargs: Any):
        super().__init__(out, size, **kwargs)
        self._start = self._seekable_start()
        self._sequence = 0
        width, height = self.size
        self.out.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
                       + self._actl(0))

    def _actl(self, frames: int) -> bytes:
        return _png_chunk(b"acTL", struct.pack(">II", frames, 1 if self.loop is None else self.loop))

    def _write(self, image: Any, box: tuple[int, int, int, int]) -> None:
        piece = image.crop(box)
        encoded = io.BytesIO()
        piece.save(encoded, "PNG")
        found = _chunks(encoded.getvalue(), 8, crc=True)
        if found[0] != (b"IHDR", struct.pack(">IIBBBBB", piece.width, piece.height, 8, 6, 0, 0, 0)):
            raise GifFormatError(f"Pillow wrote an unexpected PNG header for frame {self.frames}: {found[0]!r}")
        num, den = apng_delay(self.duration)
        control = struct.pack(">IIIIIHHBB", self._sequence, piece.width, piece.height, box[0], box[1], num, den, 0, 0)
        parts = [_png_chunk(b"fcTL", control)]
        self._sequence += 1
        for kind, payload in found:
            if kind != b"IDAT":
                continue
            if self.images == 0:  # the first image is the default image, shown by viewers without APNG
                parts.append(_png_chunk(b"IDAT", payload))
            else:
                parts.append(_png_chunk(b"fdAT", struct.pack(">I", self._sequence) + payload))
                self._sequence += 1
        self.out.write(b"".join(parts))

    def _finish(self) -> None:
        self.out.write(_png_chunk(b"IEND", b""))
        end = self.out.tell()
        self.out.seek(self._start + 33)  # after the signature (8) and IHDR (25)
        self.out.write(self._actl(self.images))
        self.out.seek(end)


class Mp4Writer(FrameWriter):
    """Write an H.264 MP4 (yuv420p) through imageio and ``imageio-ffmpeg``, frame by frame.

    Needs the extra ``daskgif[video]``.  The frame rate is ``1000 / duration``;
    *loop* is ignored (MP4 has none).  H.264 in yuv420p needs an even width and
    height: an odd one gets one black column or row more.  Transparent pixels are
    black.  Quality: x264's ``crf`` 16, preset ``medium``, with accurate colour
    conversion (about 37 dB PSNR on the sample, where ``crf`` 18 loses detail in
    sharp coloured edges that ``yuv420p`` already halves).
    """

    format = "MP4"
    crf = 16

    def __init__(self, out: BinaryIO, size: tuple[int, int], **kwargs: Any):
        super().__init__(out, size, **kwargs)
        self.check(duration=self.duration)
        import imageio.v3 as iio

        width, height = self.size
        self.frame_size = (width + width % 2, height + height % 2)
        fps = Fraction(1000) / Fraction(self.duration).limit_denominator(1000)
        self._video = iio.imopen(out, "w", plugin="FFMPEG", extension=".mp4", legacy_mode=True).legacy_get_writer(
            fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1, quality=None,
            output_params=["-crf", str(self.crf), "-preset", "medium", "-movflags", "+faststart",
                           "-sws_flags", "lanczos+accurate_rnd+full_chroma_int"],
            ffmpeg_log_level="error")

    @classmethod
    def check(cls, *, duration: float) -> None:
        """Refuse a duration of 0 (no frame rate) and a missing ``imageio-ffmpeg``, naming the extra."""
        if not duration:
            raise ValueError("duration 0 has no frame rate: give a duration above 0 milliseconds for an MP4")
        try:
            from imageio.plugins import ffmpeg  # imports imageio_ffmpeg, which finds the ffmpeg binary

            ffmpeg.get_exe()
        except (ImportError, RuntimeError) as e:
            raise ValueError(f"writing MP4 needs the extra daskgif[video]: pip install 'daskgif[video]' "
                             f"({type(e).__name__}: {e})") from None

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.close()
        finally:  # ffmpeg stops whatever happened; after an error, what it wrote goes with the unfinished output
            self._video.close()

    def _changed(self, image: Any) -> tuple[int, int, int, int]:
        return (0, 0, *self.size)  # every video frame is whole

    def _write(self, image: Any, box: tuple[int, int, int, int]) -> None:
        import numpy as np
        from PIL import Image

        frame = Image.new("RGB", self.frame_size, (0, 0, 0))
        frame.paste(image, (0, 0), mask=image)
        self._video.append_data(np.asarray(frame))

    def _finish(self) -> None:
        self._video.close()
