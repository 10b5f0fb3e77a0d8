"""Frames through Pillow (via imageio, imported on first use): decode validation, conversion to GIF, pixels.

A canvas Pillow would open only with a decompression-bomb warning is refused before it opens it: filtering
the warning would change process-wide state, unsafe in a threaded worker.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from daskgif.errors import GifFormatError
from daskgif.gif.parse import GifInfo, parse_gif

__all__ = ["to_gif", "check_decodes", "canvas_images"]

# What Pillow raises for data it cannot decode: "broken data stream", "image file is truncated", ...
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def to_gif(data: bytes | bytearray | memoryview, *, index: int | None = None, offset: int | None = None,
           max_pixels: int | None = None) -> bytes:
    """Return the first image of *data* as a one-image GIF89a, or a ``GifFormatError`` naming frame *index* at
    byte *offset*.  Up to 256 colours (255 with alpha) convert exactly, more are quantised (fast octree, no
    dithering); alpha below 128 becomes transparent.  An image of more than *max_pixels* is refused from its
    header, before a pixel is decoded.

    >>> from PIL import Image
    >>> png = io.BytesIO(); Image.new("RGB", (3, 2), (10, 20, 30)).save(png, "PNG")
    >>> gif = to_gif(png.getvalue())
    >>> Image.open(io.BytesIO(gif)).convert("RGB").getpixel((2, 1))
    (10, 20, 30)
    """
    import imageio.v3 as iio
    from PIL import Image

    _check_size(data, index, offset, max_pixels)
    try:
        file = iio.imopen(bytes(data), "r", plugin="pillow")
    except OSError:
        raise GifFormatError(f"cannot read the image starting {bytes(data[:8])!r}: truncated, "
                             "or not a format imageio's Pillow plugin reads", offset, index) from None
    try:
        with file:
            # RGBA whatever the source mode: palette, grey, 16-bit and CMYK images all arrive alike.
            frame = _to_palette(Image.fromarray(file.read(index=0, mode="RGBA")))
        out = io.BytesIO()
        frame.save(out, "GIF")  # with the transparent index of frame.info
    except (*DECODE_ERRORS, IndexError, Image.DecompressionBombError) as e:
        raise GifFormatError(f"cannot convert the image to GIF: {type(e).__name__}: {e}", offset, index) from None
    return out.getvalue()


def _check_size(data: bytes | bytearray | memoryview, index: int | None, offset: int | None,
                max_pixels: int | None) -> None:
    """Refuse an image of more than *max_pixels*, or than Pillow opens without a decompression-bomb warning, from
    its header: its pixels would take width x height x 4 bytes when decoded.

    >>> from PIL import Image
    >>> png = io.BytesIO(); Image.new("L", (300, 200)).save(png, "PNG")
    >>> _check_size(png.getvalue(), 2, 5000, max_pixels=10_000)
    Traceback (most recent call last):
    ...
    daskgif.errors.GifFormatError: frame 2 at byte 5000: image of 300x200 pixels is larger than max_pixels=10000
    """
    from PIL import Image

    size = _header_size(data)
    if size is None:  # not an image Pillow knows: imageio says so next
        return
    (width, height), limit = size, Image.MAX_IMAGE_PIXELS
    if max_pixels is not None and width * height > max_pixels:
        raise GifFormatError(f"image of {width}x{height} pixels is larger than max_pixels={max_pixels}", offset,
                             index)
    if limit is not None and width * height > limit:
        raise GifFormatError(f"image of {width}x{height} pixels is larger than Pillow opens without a "
                             f"decompression-bomb warning (PIL.Image.MAX_IMAGE_PIXELS={limit})", offset, index)


def _header_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """The size an image's header says, read by the Pillow plugin that knows its format, as ``Image.open`` does
    but without its decompression-bomb check (a warning: filtering it would change process-wide state)."""
    from PIL import Image

    Image.init()
    prefix = bytes(data[:16])
    for format_id in Image.ID:
        factory, accept = Image.OPEN[format_id]
        known = accept(prefix) if accept is not None else True
        if not known or isinstance(known, str):  # not its format, or one it names but cannot read
            continue
        try:
            with factory(io.BytesIO(data), "") as image:  # reads the header; decodes nothing
                return image.size
        except Exception:  # not this format after all
            continue
    return None


def _to_palette(rgba: Any) -> Any:
    """Return the RGBA image *rgba* as a P image, exactly when it has at most 256 colours (255 with alpha)."""
    import numpy as np
    from PIL import Image

    alpha = rgba.getchannel("A")
    transparent = alpha.point(lambda a: 255 if a < 128 else 0) if alpha.getextrema()[0] < 128 else None
    source = rgba.convert("RGB")
    if transparent is not None:
        # Paint the transparent area with an opaque colour already present, so it costs no palette entry.
        opaque = transparent.tobytes().find(0)
        fill = source.getpixel((opaque % source.width, opaque // source.width)) if opaque >= 0 else (0, 0, 0)
        source.paste(fill, mask=transparent)
    limit = 256 if transparent is None else 255
    if source.getcolors(limit) is not None:
        # Map exactly: Pillow's nearest-colour search (quantize(palette=...)) may miss by one.
        palette, indices = np.unique(np.asarray(source).reshape(-1, 3), axis=0, return_inverse=True)
        frame = Image.frombytes("P", source.size, indices.astype(np.uint8).tobytes())
        frame.putpalette(palette.tobytes())
    else:
        # Fast octree: 0.7 ms for 256x256 where median cut takes 200 ms, at a mean error of
        # about 14 levels instead of 11 on noisy photographs.
        frame = source.quantize(limit, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    if transparent is not None:
        frame.paste(255, mask=transparent)
        frame.info["transparency"] = 255
    return frame


def _reason(error: BaseException) -> str:
    """Pillow's message without its boilerplate.

    >>> _reason(OSError("broken data stream when reading image file")), _reason(EOFError())
    ('broken data stream', 'EOFError')
    """
    return str(error).replace(" when reading image file", "").strip() or type(error).__name__


def _frame_info(data: bytes | bytearray | memoryview, index: int | None, offset: int | None = None, *,
                info: GifInfo | None = None, max_pixels: int | None = None,
                size: tuple[int, int] | None = None) -> GifInfo:
    """The :func:`parse_gif` of frame *index* at *offset* (*info* when given), refused if it runs past *size* or
    Pillow would open it only with a decompression-bomb warning."""
    from PIL import Image

    try:
        info = parse_gif(data, max_pixels=max_pixels) if info is None else info
        if size is not None:
            info.check_fits(size)
    except GifFormatError as e:
        raise e.locate(frame=index, base=offset or 0) from None
    limit, (width, height) = Image.MAX_IMAGE_PIXELS, info.canvas
    if limit is not None and width * height > limit:
        raise GifFormatError(f"canvas of {width}x{height} pixels is larger than Pillow opens without a "
                             f"decompression-bomb warning (PIL.Image.MAX_IMAGE_PIXELS={limit})", offset, index)
    return info


def check_decodes(data: bytes | bytearray | memoryview, *, index: int, offset: int,
                  info: GifInfo | None = None) -> None:
    """Decode every image of the GIF frame *data* (*info*: its :func:`~daskgif.gif.parse.parse_gif`) with Pillow.

    A frame that is no GIF, is too large for Pillow or does not decode raises a ``GifFormatError`` naming
    frame *index* at *offset* plus that of the image data that failed.

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

    info = _frame_info(data, index, offset, info=info)
    for i, image in enumerate(info.images):
        start, end = image.data  # the LZW minimum code size, then the sub-blocks: Pillow's C decoder alone
        try:
            Image.frombytes("L", (image.width, image.height), bytes(data[start + 1:end]), "gif", data[start],
                            image.interlace)
        except DECODE_ERRORS as e:
            reason = "image file is truncated" if "not enough" in str(e) else "broken data stream"
            which = f"image {i} " if len(info.images) > 1 else ""
            raise GifFormatError(f"{which}image data does not decode: {reason} (Pillow)", offset + start,
                                 index) from None


def canvas_images(data: bytes | bytearray | memoryview, size: tuple[int, int], *, index: int | None = None,
                  max_pixels: int | None = None) -> Iterator[Any]:
    """Yield every image of the GIF frame *data* as an RGBA ``PIL.Image`` of *size*, as a viewer shows it:
    drawn at its position on a transparent canvas, disposed of as it says.  A ``GifFormatError`` names frame
    *index* for data that is no GIF, too large, runs past the canvas, or does not decode.

    >>> from daskgif.gif.encode import encode_gif
    >>> red_green = b"\\xff\\x00\\x00\\x00\\xff\\x00"
    >>> gif = encode_gif(2, 1, red_green, bytes([0, 1]), transparent=1, left=1, screen=(3, 1))
    >>> [im.getpixel((x, 0)) for im in canvas_images(gif, (3, 2)) for x in range(3)]
    [(0, 0, 0, 0), (255, 0, 0, 255), (0, 0, 0, 0)]
    """
    from PIL import Image

    info = _frame_info(data, index, max_pixels=max_pixels, size=size)
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    with Image.open(io.BytesIO(data), formats=("GIF",)) as im:
        for i, image in enumerate(info.images):
            box = (image.left, image.top, image.left + image.width, image.top + image.height)
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
