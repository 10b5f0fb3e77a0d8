"""daskgif: the image ETL pipeline as a lazy Dask graph.

Names are imported on first use, so the pure byte modules (``daskgif.gif``
package) can be used without loading Dask.
Type checkers see every name through the ``TYPE_CHECKING`` imports below.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING, Any

from daskgif.version import __version__

_exports = {
    "build_graph": "daskgif.pipeline.graph",
    "build_graphs": "daskgif.pipeline.graph",
    "Result": "daskgif.pipeline.result",
    "Task": "daskgif.core.task",
    "task": "daskgif.core.task",
    "Skip": "daskgif.core.task",
    "State": "daskgif.core.state",
    "DaskgifError": "daskgif.errors",
    "GifFormatError": "daskgif.errors",
    "FetchError": "daskgif.errors",
    "RunFailed": "daskgif.errors",
    "split_frames": "daskgif.gif.split",
    "join_gifs": "daskgif.gif.join",
    "sample_path": "daskgif.pipeline.sample",
    "run_schedule": "daskgif.ops.schedule",
    "progress": "daskgif.views.progress",
    "draw_run": "daskgif.views.runpicture",
    "Cancelled": "daskgif.errors",
}

__all__ = sorted(_exports)

# A library logs; the application decides where it goes (the CLI does, with -v).
logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from daskgif.core.state import State
    from daskgif.core.task import Skip, Task, task
    from daskgif.errors import (
        Cancelled,
        DaskgifError,
        FetchError,
        GifFormatError,
        RunFailed,
    )
    from daskgif.gif.join import join_gifs
    from daskgif.gif.split import split_frames
    from daskgif.ops.schedule import run_schedule
    from daskgif.pipeline.graph import build_graph, build_graphs
    from daskgif.pipeline.result import Result
    from daskgif.pipeline.sample import sample_path
    from daskgif.views.progress import progress
    from daskgif.views.runpicture import draw_run



class _DefaultsOnDaskImport:
    """Register daskgif's defaults in ``dask.config`` as soon as Dask loads it.

    An installed daskgif also ships ``daskgif.yaml`` in ``{sys.prefix}/etc/dask``;
    an editable install or a source checkout does not, and importing the pure
    modules must not load Dask. This import hook covers both: ``import daskgif``
    then ``import dask`` sees the defaults, without daskgif importing Dask itself.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "dask.config":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                run(module)
                _register(module)

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _register(dask_config: Any) -> None:
    importlib.import_module("daskgif.config")  # importing it registers daskgif.yaml


if "dask.config" in sys.modules:
    _register(sys.modules["dask.config"])
else:
    sys.meta_path.insert(0, _DefaultsOnDaskImport())


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all

    def __getattr__(name: str) -> Any:
        try:
            module = _exports[name]
        except KeyError:
            raise AttributeError(f"module 'daskgif' has no attribute {name!r}") from None
        return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
