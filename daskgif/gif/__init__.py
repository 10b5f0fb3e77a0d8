"""GIF bytes, standard library only (no Dask, fsspec or Pillow): ``parse`` walks a GIF to its trailer, ``split``
finds the frames of an image-data file (``spans`` holds where they lie), ``join`` writes an animated GIF without
decoding, ``encode`` makes GIFs from pixels (the sample and the tests)."""

from daskgif.gif.join import GifWriter, join_gifs
from daskgif.gif.parse import GifInfo, ImageInfo, parse_gif
from daskgif.gif.spans import Span, Spans
from daskgif.gif.split import split_bytes, split_frames

__all__ = ["GifInfo", "GifWriter", "ImageInfo", "Span", "Spans", "join_gifs", "parse_gif", "split_bytes",
           "split_frames"]
