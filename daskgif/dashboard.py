"""The runs page as a scheduler preload: ``dask scheduler --preload daskgif.dashboard``.

A stable name for the preload and for :func:`page_link`, as the documentation
shows them; the page itself is :mod:`daskgif.views.dashboard`.
"""

from daskgif.views.dashboard import dask_setup, page_link

__all__ = ["dask_setup", "page_link"]
