"""The runs page as a scheduler preload: ``dask scheduler --preload daskgif.dashboard``.

A stable name for the preload; the page itself is :mod:`daskgif.views.dashboard`.
"""

from daskgif.views.dashboard import dask_setup

__all__ = ["dask_setup"]
