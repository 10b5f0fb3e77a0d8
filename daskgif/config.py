"""daskgif's defaults in ``dask.config``, under the ``daskgif`` namespace.

Importing this module registers ``daskgif.yaml``; values set with
``dask.config.set`` or ``DASK_DASKGIF__...`` variables take precedence.
Configuration is read on the client when a graph is built, never inside a task.
"""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

fn = os.path.join(os.path.dirname(__file__), "daskgif.yaml")

with open(fn) as f:
    defaults = yaml.safe_load(f)

dask.config.update_defaults(defaults)


def get(key: str, default: Any = None) -> Any:
    """Return ``daskgif.<key>`` from ``dask.config``.

    Parameters
    ----------
    key : str
        Key below the ``daskgif`` namespace, e.g. ``"max-bytes"``.
    default : object, optional
        Value returned when *key* is not set; without it a missing key raises.
    """
    if default is None:
        return dask.config.get(f"daskgif.{key}")
    return dask.config.get(f"daskgif.{key}", default)
