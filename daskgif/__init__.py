"""daskgif: the image ETL pipeline as a lazy Dask graph.

Names are imported on first use, so the pure byte modules (``daskgif.gif``) load without
Dask; type checkers see them through the ``TYPE_CHECKING`` imports.
"""

from __future__ import annotations

import importlib
import logging
import sys
from importlib.machinery import PathFinder
from typing import TYPE_CHECKING, Any

from daskgif.version import __version__

_MODULES = {
    "daskgif.pipeline.graph": ["build_graph", "build_graphs"],
    "daskgif.pipeline.result": ["Result"],
    "daskgif.pipeline.sample": ["sample_path"],
    "daskgif.core.task": ["Task", "task", "Skip"],
    "daskgif.core.state": ["State"],
    "daskgif.errors": ["DaskgifError", "GifFormatError", "FetchError", "RunFailed", "Cancelled", "LockHeld",
                       "TaskTimeout"],
    "daskgif.gif.split": ["split_frames"],
    "daskgif.gif.join": ["join_gifs"],
    "daskgif.ops.schedule": ["run_schedule"],
    "daskgif.views.progress": ["progress"],
    "daskgif.views.pictures": ["draw_run"],
}
_exports = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_exports)

# A library logs; the application decides where it goes (the CLI does, with -v).
logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from daskgif.core.state import State
    from daskgif.core.task import Skip, Task, task
    from daskgif.errors import Cancelled, DaskgifError, FetchError, GifFormatError, LockHeld, RunFailed, TaskTimeout
    from daskgif.gif.join import join_gifs
    from daskgif.gif.split import split_frames
    from daskgif.ops.schedule import run_schedule
    from daskgif.pipeline.graph import build_graph, build_graphs
    from daskgif.pipeline.result import Result
    from daskgif.pipeline.sample import sample_path
    from daskgif.views.progress import progress
    from daskgif.views.pictures import draw_run


class _DefaultsOnDaskImport:
    """Once ``dask.config`` loads, import ``daskgif.config`` (the defaults): ``import daskgif`` must not load Dask."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "dask.config":
            return None
        sys.meta_path.remove(self)
        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                run(module)
                importlib.import_module("daskgif.config")

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "dask.config" in sys.modules:
    importlib.import_module("daskgif.config")
else:
    sys.meta_path.insert(0, _DefaultsOnDaskImport())


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all

    def __getattr__(name: str) -> Any:
        if name not in _exports:
            raise AttributeError(f"module 'daskgif' has no attribute {name!r}")
        return getattr(importlib.import_module(_exports[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
