"""daskgif's defaults in ``dask.config``, under the ``daskgif`` namespace.

Importing this module registers ``daskgif/daskgif.yaml`` with ``dask.config.update_defaults``
(``pip install .`` also puts it in ``{sys.prefix}/etc/dask/``, where Dask reads it itself).
``dask.config.set``, YAML files and ``DASK_DASKGIF__...`` variables take precedence.
Configuration is read on the client when a graph is built, never inside a task.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Collection
from typing import Any

import yaml
from dask import config as dask_config  # works while dask itself is still importing
from dask.typing import no_default

__all__ = ["get", "check", "env_name", "defaults"]

with open(os.path.join(os.path.dirname(__file__), "daskgif.yaml")) as f:
    defaults = yaml.safe_load(f)


def keep_given(given: dict, default: dict, merged: dict) -> None:
    """Put back into *merged* the values of *given* that are no mapping where *default* holds one.

    ``dask.config.update_defaults`` would replace ``DASK_DASKGIF__TASK_TIMEOUT=2`` (the documented
    one-number form, read before daskgif is imported) by the default per-step mapping.

    >>> merged = {"task-timeout": {"fetch": None}, "limits": {"fetch": None}}
    >>> keep_given({"task_timeout": 2, "limits": {"fetch": 3}}, {"task-timeout": {"fetch": None},
    ...            "limits": {"fetch": None}}, merged)
    >>> merged
    {'task-timeout': 2, 'limits': {'fetch': None}}
    """
    for key, value in default.items():
        name, here = dask_config.canonical_name(key, given), dask_config.canonical_name(key, merged)
        if not isinstance(value, dict) or given.get(name) is None:
            continue
        if isinstance(given[name], dict):
            keep_given(given[name], value, merged[here])
        else:
            merged[here] = given[name]


_given = copy.deepcopy(dask_config.config.get("daskgif")) or {}
dask_config.update_defaults(defaults)
keep_given(_given, defaults["daskgif"], dask_config.config["daskgif"])


def get(key: str, default: Any = no_default) -> Any:
    """Return ``daskgif.<key>`` (``"max-bytes"``, ``"dashboard.max-runs"``) from ``dask.config``.

    Without *default*, a missing key raises.

    >>> import dask
    >>> get("on-error")
    'raise'
    >>> with dask.config.set({"daskgif.on-error": "skip"}):
    ...     get("on-error")
    'skip'
    """
    return dask_config.get(f"daskgif.{key}", default)


def env_name(key: str) -> str:
    """Return the environment variable that sets ``daskgif.<key>``.

    >>> env_name("on-error"), env_name("dashboard.max-runs")
    ('DASK_DASKGIF__ON_ERROR', 'DASK_DASKGIF__DASHBOARD__MAX_RUNS')
    """
    return "DASK_DASKGIF__" + key.upper().replace(".", "__").replace("-", "_")


def check(key: str, value: Any, allowed: Collection[Any] | Callable[[Any], bool], expected: str | None = None) -> Any:
    """Return *value* if it is an allowed value of ``daskgif.<key>``, else raise ``ValueError``.

    *allowed* is a collection or a function that says whether *value* is allowed; *expected* says
    it in words (required with a function).  The message names the environment variable when the
    value came from there.

    >>> check("on-error", "skip", ("raise", "skip"))
    'skip'
    >>> check("on-error", "explode", ("raise", "skip"))
    Traceback (most recent call last):
    ...
    ValueError: daskgif.on-error must be 'raise' or 'skip', got 'explode'
    >>> check("frames-per-task", 0, lambda v: v == "auto" or (isinstance(v, int) and v > 0),
    ...       "'auto' or a positive integer")
    Traceback (most recent call last):
    ...
    ValueError: daskgif.frames-per-task must be 'auto' or a positive integer, got 0
    """
    if callable(allowed) and expected is None:
        raise TypeError("check() needs expected= when allowed is a function")
    if allowed(value) if callable(allowed) else value in allowed:
        return value
    if expected is None:
        words = [repr(v) for v in allowed]
        expected = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
    name = env_name(key)
    source = f" (set by {name})" if name in os.environ and get(key, None) == value else ""
    raise ValueError(f"daskgif.{key} must be {expected}, got {value!r}{source}")
