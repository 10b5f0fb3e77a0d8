"""Helpers that make small test frames and image-data files, and decode GIFs for comparison.

Imported by the test modules as ``import frames`` / ``from frames import ...``: pytest's
default "prepend" import mode puts ``tests/`` (no ``__init__.py``) on ``sys.path``.
"""

from __future__ import annotations

import io
import random
import shutil

import pytest

from daskgif.gif.encode import encode_gif

DELIMITER = b"\n\n\n\n"

#: gifsicle is a second, independent GIF decoder; ``.ci/run`` installs it from Debian.
requires_gifsicle = pytest.mark.skipif(shutil.which("gifsicle") is None,
                                       reason="gifsicle is not installed (apt-get install gifsicle)")


def make_palette(colours: int = 256, seed: int = 0) -> bytes:
    """Return *colours* distinct-looking RGB triplets, the same for the same seed."""
    rnd = random.Random(seed)
    return bytes(rnd.randrange(256) for _ in range(3 * colours))


def make_pixels(width: int, height: int, colours: int = 256, seed: int = 0) -> bytes:
    """Return colour indices mixing gradients (long LZW runs) and noise (short ones)."""
    rnd = random.Random(seed + 1)
    return bytes(
        rnd.randrange(colours) if rnd.random() < 0.3 else (x + y + seed) * colours // (width + height + 1) % colours
        for y in range(height) for x in range(width)
    )


def make_gif(width: int, height: int, seed: int = 0, *, colours: int = 256, palette: bytes | None = None,
             pixels: bytes | None = None, **encode_kwargs) -> bytes:
    """Return a deterministic single-image GIF; the keywords go to :func:`daskgif.gif.encode.encode_gif`."""
    if palette is None:
        palette = make_palette(colours, seed)
    colours = len(palette) // 3
    if pixels is None:
        pixels = make_pixels(width, height, colours, seed)
    return encode_gif(width, height, palette, pixels, **encode_kwargs)


def make_png(width: int, height: int, seed: int = 0, *, colours: int = 16, alpha: bool = False) -> bytes:
    """Return a PNG of at most *colours* colours (so its GIF conversion is exact), RGBA with *alpha*."""
    from PIL import Image

    palette = make_palette(colours, seed)
    pixels = make_pixels(width, height, colours, seed)
    rgb = b"".join(palette[3 * i:3 * i + 3] for i in pixels)
    im = Image.frombytes("RGB", (width, height), rgb)
    if alpha:
        im.putalpha(Image.frombytes("L", (width, height), bytes(0 if p % 5 == 0 else 255 for p in pixels)))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def make_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """Return a JPEG (lossy, so compare its conversion to Pillow's own decoding)."""
    from PIL import Image

    im = Image.frombytes("RGB", (width, height), make_pixels(width, height, 256, seed) * 3)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue()


def image_data(frames: list[bytes], delimiter: bytes = DELIMITER, trailing: bool = True) -> bytes:
    """Join *frames* as an image-data file: frames separated by *delimiter*, one more at the end if *trailing*."""
    return delimiter.join(frames) + (delimiter if trailing else b"")


def decode_rgb(gif: bytes) -> list[bytes]:
    """Return every frame of *gif* as Pillow shows it, as RGB bytes."""
    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(gif)) as im:
        return [frame.convert("RGB").tobytes() for frame in ImageSequence.Iterator(im)]


def decode_rgba(gif: bytes) -> list[bytes]:
    """Return every frame of *gif* as Pillow shows it, as RGBA bytes."""
    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(gif)) as im:
        return [frame.convert("RGBA").tobytes() for frame in ImageSequence.Iterator(im)]


def newline_palette(colours: int = 16) -> bytes:
    """Return a palette holding (10, 10, 10) then (10, 10, 10): ``b"\\n" * 6`` inside a colour table."""
    return (b"\n\n\n" * 2 + make_palette(colours - 2, 7))[:3 * colours]


def make_raw_gif(width: int, height: int, palette: bytes, pixels: bytes, **encode_kwargs) -> bytes:
    """Return a GIF whose LZW data stores every pixel as its own byte ("uncompressed" LZW).

    With a 128-colour table the codes are 8 bits wide, and a clear code every 100 pixels
    keeps them so: pixel value 10 is the byte ``b"\\n"`` in the image data.
    """
    assert len(palette) == 3 * 128 and max(pixels) < 128
    gif = encode_gif(width, height, palette, pixels, **encode_kwargs)
    from daskgif.gif.parse import parse_gif

    start, end = parse_gif(gif).images[0].data
    codes = bytearray([128])
    for i in range(0, len(pixels), 100):
        codes += pixels[i:i + 100] + b"\x80"
    codes.append(129)
    blocks = bytearray([7])
    for i in range(0, len(codes), 255):
        blocks += bytes([len(codes[i:i + 255])]) + codes[i:i + 255]
    blocks.append(0)
    return gif[:start] + bytes(blocks) + gif[end:]


def corrupt_code(gif: bytes, image: int = 0) -> bytes:
    """Return *gif* with a code past the end of the LZW table inside image data; the block structure is intact.

    :func:`make_raw_gif` stores every pixel as its own 8-bit code after a clear code;
    right after a clear, the largest code the decoder knows is 130 (clear, EOI and one
    new entry), so 0xFE cannot be decoded.
    """
    from daskgif.gif.parse import parse_gif

    start, _ = parse_gif(gif).images[image].data
    buf = bytearray(gif)
    buf[start + 2 + 1] = 0xFE  # min code size, sub-block size, clear code, then the first pixel code
    return bytes(buf)


def mutate(data: bytes, mutations: list) -> bytes:
    """Apply ``(op, where, arg)`` mutations: set a byte, flip a bit, cut, insert, truncate (hypothesis fuzzing)."""
    buf = bytearray(data)
    for op, where, arg in mutations:
        if not buf:
            break
        at = where % len(buf)
        if op == "set":
            buf[at] = arg
        elif op == "flip":
            buf[at] ^= 1 << arg
        elif op == "cut":
            del buf[at:at + arg]
        elif op == "insert":
            buf[at:at] = arg
        else:
            del buf[at:]
    return bytes(buf)
