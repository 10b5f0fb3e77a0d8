"""Frames through Pillow (via imageio): decode validation and conversion of non-GIF frames to GIF.

The byte modules (``daskgif.gif``) never decode; this module does, and only when
a frame needs it (Pillow is imported on the first call, not with this module).

**Validation.** The structure walk of ``daskgif.gif`` catches truncation and
bad block introducers, not a corrupt LZW code stream: only a decode does.  The
lossless join copies image data without decoding it, so a frame whose data does not
decode would make an animated GIF that no viewer shows.  :func:`check_decodes`
decodes every image of a frame once, in the frame's own task, and turns a failure
into a :class:`~daskgif.errors.GifFormatError` naming the frame and the byte offset
of the image data that failed.  Pillow's decompression-bomb check is never allowed
to warn: a canvas larger than ``PIL.Image.MAX_IMAGE_PIXELS`` is refused *before*
Pillow opens the frame (turning the warning into an error with
:func:`warnings.catch_warnings` would change the process-wide warning filters, which
is not safe in a threaded worker).

**Conversion.** :func:`to_gif` reads a frame in any format imageio's Pillow plugin
reads.  An image of at most 256 colours (255 with transparency) converts exactly; a
richer one is quantised to 256 colours (fast octree, no dithering, deterministic).
Pixels with alpha below 128 become the transparent colour.

**Pixels.** :func:`canvas_images` decodes a GIF frame to RGBA images of a given
canvas, as a GIF viewer shows it, for the writers of other outputs
(:mod:`daskgif.writers`).
"""


from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from daskgif.errors import GifFormatError
from daskgif.gif.parse import GifInfo, parse_gif

__all__ = ["to_gif", "check_decodes", "canvas_images", "pillow_limit"]


def to_gif(data: bytes | bytearray | memoryview, *, index: int | None = None, offset: int | None = None) -> bytes:
    """Return the first image of *data* as a GIF89a of at most 256 colours.

    Parameters
    ----------
    data : bytes-like
        An image file in any format imageio's Pillow plugin reads.
    index : int, optional
        The frame index, named in errors.
    offset : int, optional
        The frame's byte offset in the data file, named in errors.

    Returns
    -------
    bytes
        A single-image GIF with a global colour table.

    Raises
    ------
    GifFormatError
        *data* is not an image the Pillow plugin can read, or cannot be decoded.

    Examples
    --------
    >>> from PIL import Image
    >>> png = io.BytesIO(); Image.new("RGB", (3, 2), (10, 20, 30)).save(png, "PNG")
    >>> gif = to_gif(png.getvalue())
    >>> Image.open(io.BytesIO(gif)).convert("RGB").getpixel((2, 1))
    (10, 20, 30)
    """
    import imageio.v3 as iio
    from PIL import Image

    try:
        file = iio.imopen(bytes(data), "r", plugin="pillow")
    except OSError:
        raise GifFormatError(f"cannot read the image starting {bytes(data[:8])!r}: truncated, "
                             "or not a format imageio's Pillow plugin reads", offset, index) from None
    try:
        with file:
            # RGBA whatever the source mode: palette, grey, 16-bit and CMYK images all arrive alike.
            pixels = file.read(index=0, mode="RGBA")
        frame = _to_palette(Image.fromarray(pixels))
        out = io.BytesIO()
        frame.save(out, "GIF", **({"transparency": frame.info["transparency"]} if "transparency" in frame.info else {}))
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, Image.DecompressionBombError) as e:
        raise GifFormatError(f"cannot convert the image to GIF: {type(e).__name__}: {e}", offset, index) from None
    return out.getvalue()


def _to_palette(im):
    """Return *im* as a P image of at most 256 colours, exactly when it has that few."""
    from PIL import Image

    transparent = None
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 128:
            transparent = alpha.point(lambda a: 255 if a < 128 else 0)
        rgb = rgba.convert("RGB")
    else:
        rgb = im.convert("RGB")
    limit = 255 if transparent is not None else 256
    source = rgb
    if transparent is not None:
        # Paint the transparent area with an opaque colour already present, so it costs no palette entry.
        source = rgb.copy()
        source.paste(rgb.getpixel(_first_opaque(transparent)) if transparent.getextrema()[0] == 0 else (0, 0, 0),
                     mask=transparent)
    colours = source.getcolors(limit)
    if colours is not None:
        # Map exactly: Pillow's nearest-colour search (quantize(palette=...)) may miss by one.
        lut = {bytes(c): i for i, (_, c) in enumerate(sorted(colours, key=lambda nc: nc[1]))}
        data = source.tobytes()
        indices = bytes([lut[data[i:i + 3]] for i in range(0, len(data), 3)])
        frame = Image.frombytes("P", source.size, indices)
        frame.putpalette(b"".join(lut).ljust(768, b"\x00"))
    else:
        # Fast octree: 0.7 ms for 256x256 where median cut takes 200 ms, at a mean error of
        # about 14 levels instead of 11 on noisy photographs.
        frame = source.quantize(limit, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    if transparent is not None:
        frame.paste(255, mask=transparent)
        frame.info["transparency"] = 255
    return frame


def _first_opaque(mask) -> tuple[int, int]:
    """Return the position of the first pixel that *mask* (255 = transparent) leaves opaque."""
    width = mask.width
    i = mask.tobytes().index(0)
    return i % width, i // width


# What Pillow raises for data it cannot decode: "broken data stream", "image file is truncated", ...
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def pillow_limit() -> int | None:
    """Return the most pixels Pillow opens without a decompression-bomb warning (None: no limit).

    >>> pillow_limit() == __import__("PIL.Image").Image.MAX_IMAGE_PIXELS
    True
    """
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def _reason(error: BaseException) -> str:
    """Pillow's message without its boilerplate.

    >>> _reason(OSError("broken data stream when reading image file"))
    'broken data stream'
    >>> _reason(EOFError())
    'EOFError'
    """
    text = str(error).replace(" when reading image file", "").strip()
    return text or type(error).__name__


def check_decodes(data: bytes | bytearray | memoryview, *, index: int, offset: int,
                  info: GifInfo | None = None) -> None:
    """Decode every image of the GIF frame *data* with Pillow; raise if one does not decode.

    Parameters
    ----------
    data : bytes-like
        One GIF frame, from its signature on.
    index : int
        The frame's index, for the error.
    offset : int
        The frame's byte offset in its data file, for the error; the error's
        offset adds the position of the image data that failed.
    info : GifInfo, optional
        The frame's :func:`~daskgif.gif.parse.parse_gif` result, when the caller has it
        (saves a structure walk).

    Raises
    ------
    GifFormatError
        The frame is not a GIF (from the structure walk), its canvas is larger than
        Pillow opens without a decompression-bomb warning, or an image's data does
        not decode: ``image data does not decode: broken data stream (Pillow)``.

    Examples
    --------
    >>> from daskgif.gif.encode import encode_gif
    >>> gif = encode_gif(2, 2, bytes(6), bytes(4))
    >>> check_decodes(gif, index=3, offset=100)
    >>> bad = gif[:31] + b"\\xff" + gif[32:]  # a code past the end of the LZW table
    >>> check_decodes(bad, index=3, offset=100)
    Traceback (most recent call last):
    ...
    daskgif.errors.GifFormatError: frame 3 at byte 129: image data does not decode: broken data stream (Pillow)
    """
    from PIL import Image

    if info is None:
        try:
            info = parse_gif(data)
        except GifFormatError as e:
            raise e.locate(frame=index, base=offset) from None
    _check_pillow_limit(info, offset, index)
    image = 0
    try:
        with Image.open(io.BytesIO(data), formats=("GIF",)) as im:
            im.load()
            for image in range(1, len(info.images)):
                im.seek(image)
                im.load()
    except DECODE_ERRORS as e:
        start = info.images[min(image, len(info.images) - 1)].data[0]
        which = f"image {image} " if len(info.images) > 1 else ""
        message = f"{which}image data does not decode: {_reason(e)} (Pillow)"
        raise GifFormatError(message, offset + start, index) from None


def _check_pillow_limit(info: GifInfo, offset: int | None, index: int | None) -> None:
    """Refuse a canvas Pillow would open only with a decompression-bomb warning."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    width, height = info.canvas
    if limit is not None and width * height > limit:
        raise GifFormatError(f"canvas of {width}x{height} pixels is larger than Pillow opens without a "
                             f"decompression-bomb warning (PIL.Image.MAX_IMAGE_PIXELS={limit})", offset, index)


def canvas_images(data: bytes | bytearray | memoryview, size: tuple[int, int], *, index: int | None = None,
                  max_pixels: int | None = None) -> Iterator[Any]:
    """Yield every image of the GIF frame *data* as an RGBA ``PIL.Image`` of *size*, as a viewer shows it.

    The frame sits at the top left of a transparent canvas of *size*; each image is
    drawn at its own position, its transparent pixels leave what is below, and the
    canvas is disposed of between images as the image's disposal method says.
    Pixels nothing was drawn on are ``(0, 0, 0, 0)``.  Every canvas yielded is a new
    image, so memory holds about two canvases however many images the frame has.

    Parameters
    ----------
    data : bytes-like
        One GIF frame.
    size : tuple of int
        ``(width, height)`` of the canvas; every image must fit on it.
    index : int, optional
        The frame's index, named in errors.
    max_pixels : int, optional
        As for :func:`~daskgif.gif.parse.parse_gif`.

    Raises
    ------
    GifFormatError
        *data* is not a GIF, is larger than *max_pixels* or than Pillow opens
        without a decompression-bomb warning, has an image that runs past the
        canvas, or does not decode.

    Examples
    --------
    >>> from daskgif.gif.encode import encode_gif
    >>> red_green = b"\\xff\\x00\\x00\\x00\\xff\\x00"
    >>> gif = encode_gif(2, 1, red_green, bytes([0, 1]), transparent=1, left=1, screen=(3, 1))
    >>> [im.getpixel((x, 0)) for im in canvas_images(gif, (3, 2)) for x in range(3)]
    [(0, 0, 0, 0), (255, 0, 0, 255), (0, 0, 0, 0)]
    """
    from PIL import Image

    try:
        info = parse_gif(data, max_pixels=max_pixels)
    except GifFormatError as e:
        raise e.locate(frame=index) from None
    _check_pillow_limit(info, None, index)
    width, height = size
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    with Image.open(io.BytesIO(data), formats=("GIF",)) as im:
        for i, image in enumerate(info.images):
            box = (image.left, image.top, image.left + image.width, image.top + image.height)
            if box[2] > width or box[3] > height:
                raise GifFormatError(f"image {i} at ({image.left}, {image.top}) of {image.width}x{image.height} "
                                     f"pixels runs past the canvas of {width}x{height}", image.data[0], index)
            try:
                im.seek(i)
                # Pillow fills a first image's surroundings with colour 0: only the image's own box is taken.
                pixels = im.convert("RGBA").crop(box)
            except DECODE_ERRORS as e:
                raise GifFormatError(f"image {i} does not decode: {_reason(e)} (Pillow)", image.data[0],
                                     index) from None
            before = canvas.copy() if image.disposal == 3 else None
            canvas.paste(pixels, box[:2], mask=pixels)  # GIF alpha is 0 or 255: a transparent pixel shows what is below
            yield canvas.copy()
            if image.disposal == 2:
                canvas.paste((0, 0, 0, 0), box)
            elif before is not None:
                canvas = before
