"""Decode validation: check that a GIF frame's image data decodes, with Pillow's C decoder.

The structure walk of :mod:`daskgif.gif` catches truncation and bad block
introducers, not a corrupt LZW code stream: only a decode does.  The lossless join
copies image data without decoding it, so a frame whose data does not decode would
make an animated GIF that no viewer shows.  :func:`check_decodes` decodes every
image of a frame once, in the frame's own task, and turns a failure into a
:class:`~daskgif.errors.GifFormatError` naming the frame and the byte offset of the
image data that failed.

Pillow's decompression-bomb check is never allowed to warn: a canvas larger than
``PIL.Image.MAX_IMAGE_PIXELS`` is refused *before* Pillow opens the frame.  (Turning
the warning into an error with :func:`warnings.catch_warnings` would change the
process-wide warning filters, which is not safe in a threaded worker.)

Pillow is imported on the first call, not with this module.
"""

from __future__ import annotations

import io

from daskgif.errors import GifFormatError
from daskgif.gif import GifInfo, parse_gif

__all__ = ["check_decodes", "pillow_limit"]

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
        The frame's :func:`~daskgif.gif.parse_gif` result, when the caller has it
        (saves a structure walk).

    Raises
    ------
    GifFormatError
        The frame is not a GIF (from the structure walk), its canvas is larger than
        Pillow opens without a decompression-bomb warning, or an image's data does
        not decode: ``image data does not decode: broken data stream (Pillow)``.

    Examples
    --------
    >>> from daskgif.encode import encode_gif
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
    limit = Image.MAX_IMAGE_PIXELS
    width, height = info.canvas
    if limit is not None and width * height > limit:
        raise GifFormatError(f"canvas of {width}x{height} pixels is larger than Pillow opens without a "
                             f"decompression-bomb warning (PIL.Image.MAX_IMAGE_PIXELS={limit})", offset, index)
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
