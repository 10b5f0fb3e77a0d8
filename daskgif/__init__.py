"""daskgif: the image ETL pipeline as a lazy Dask graph.

Names are imported on first use, so the pure byte modules (``daskgif.gif``,
``daskgif.split``, ``daskgif.join``) can be used without loading Dask.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

_exports = {
    "build_graph": "daskgif.graph",
    "Result": "daskgif.result",
    "Task": "daskgif.tasks",
    "task": "daskgif.tasks",
    "Skip": "daskgif.tasks",
    "State": "daskgif.tasks",
    "DaskgifError": "daskgif.errors",
    "GifFormatError": "daskgif.errors",
    "FetchError": "daskgif.errors",
    "RunFailed": "daskgif.errors",
    "split_frames": "daskgif.split",
    "join_gifs": "daskgif.join",
    "sample_path": "daskgif.sample",
    "run_schedule": "daskgif.schedule",
    "progress": "daskgif.progress",
    "Cancelled": "daskgif.errors",
}

__all__ = sorted(_exports)

# A library logs; the application decides where it goes (the CLI does, with -v).
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    try:
        module = _exports[name]
    except KeyError:
        raise AttributeError(f"module 'daskgif' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
