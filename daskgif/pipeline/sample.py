"""The sample image-data file shipped inside the package, so the pipeline runs offline."""

from __future__ import annotations

from importlib.resources import files

__all__ = ["sample_path"]


def sample_path() -> str:
    """Return the absolute path of the embedded sample image-data file, made by ``scripts/make_sample.py``: 32
    GIF89a frames of 160x120 (a ball bouncing over a field), each with its own table, joined by four newlines.

    >>> import os
    >>> os.path.isabs(sample_path()), os.path.basename(sample_path())
    (True, 'sample.img')
    """
    return str(files("daskgif") / "data" / "sample.img")
