"""daskgif's defaults in ``dask.config``, under the ``daskgif`` namespace.

The defaults are ``daskgif/daskgif.yaml``. Importing this module registers them
with ``dask.config.update_defaults``. ``pip install .`` also puts that file in
``{sys.prefix}/etc/dask/``, where Dask reads it when it is imported, so they are in
``dask.config`` before daskgif is imported (an editable install leaves the file
out). The ``dask`` command loads daskgif through its ``dask_cli`` entry point, so
``dask config get daskgif`` shows them after any install.
Values set with ``dask.config.set``, in YAML files or with ``DASK_DASKGIF__...``
variables take precedence. Configuration is read on the client when a graph is
built, never inside a task.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Collection
from typing import Any

import yaml
from dask import config as dask_config  # works while dask itself is still importing

__all__ = ["get", "check", "env_name", "defaults"]

fn = os.path.join(os.path.dirname(__file__), "daskgif.yaml")

with open(fn) as f:
    defaults = yaml.safe_load(f)


def keep_given(given: Any, default: Any, merged: dict) -> None:
    """Put back into *merged* the values of *given* that are no mapping where *default* holds one.

    ``dask.config.update_defaults`` replaces such a value by the default mapping: without this,
    ``task-timeout: 2`` in a YAML file or ``DASK_DASKGIF__TASK_TIMEOUT=2`` (the documented one-number
    form) read before daskgif was imported would silently become the default per-step mapping.

    >>> merged = {"task-timeout": {"fetch": None}, "limits": {"fetch": None}}
    >>> keep_given({"task_timeout": 2, "limits": {"fetch": 3}}, {"task-timeout": {"fetch": None},
    ...            "limits": {"fetch": None}}, merged)
    >>> merged
    {'task-timeout': 2, 'limits': {'fetch': None}}
    """
    if not isinstance(given, dict) or not isinstance(default, dict):
        return
    for key, value in default.items():
        if not isinstance(value, dict):
            continue
        name = dask_config.canonical_name(key, given)
        if name not in given or given[name] is None:
            continue
        here = dask_config.canonical_name(key, merged)
        if isinstance(given[name], dict):
            keep_given(given[name], value, merged.setdefault(here, {}))
        else:
            merged[here] = given[name]


_given = copy.deepcopy(dask_config.config.get("daskgif"))
dask_config.update_defaults(defaults)
keep_given(_given, defaults["daskgif"], dask_config.config["daskgif"])


def get(key: str, default: Any = None) -> Any:
    """Return ``daskgif.<key>`` from ``dask.config``.

    Parameters
    ----------
    key : str
        Key below the ``daskgif`` namespace, e.g. ``"max-bytes"`` or
        ``"dashboard.max-runs"``.
    default : object, optional
        Value returned when *key* is not set; without it a missing key raises.

    Examples
    --------
    >>> import dask
    >>> get("on-error")
    'raise'
    >>> with dask.config.set({"daskgif.on-error": "skip"}):
    ...     get("on-error")
    'skip'
    """
    if default is None:
        return dask_config.get(f"daskgif.{key}")
    return dask_config.get(f"daskgif.{key}", default)


def env_name(key: str) -> str:
    """Return the environment variable that sets ``daskgif.<key>``.

    >>> env_name("on-error")
    'DASK_DASKGIF__ON_ERROR'
    >>> env_name("dashboard.max-runs")
    'DASK_DASKGIF__DASHBOARD__MAX_RUNS'
    """
    return "DASK_DASKGIF__" + key.upper().replace(".", "__").replace("-", "_")


def check(key: str, value: Any, allowed: Collection[Any] | Callable[[Any], bool], expected: str | None = None) -> Any:
    """Return *value* if it is an allowed value of ``daskgif.<key>``, else raise.

    The message names the key, what was expected and what was got, and the
    environment variable when that is where the value came from.

    Parameters
    ----------
    key : str
        Key below the ``daskgif`` namespace, e.g. ``"on-error"``.
    value : object
        The value to check, usually ``get(key)``.
    allowed : collection or callable
        The allowed values, or a function that returns whether *value* is allowed.
    expected : str, optional
        What is allowed, in words; required when *allowed* is a function.

    Raises
    ------
    ValueError
        *value* is not allowed.

    Examples
    --------
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
    if callable(allowed):
        if expected is None:
            raise TypeError("check() needs expected= when allowed is a function")
        ok = allowed(value)
    else:
        ok = value in allowed
        if expected is None:
            words = [repr(v) for v in allowed]
            expected = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
    if ok:
        return value
    source = ""
    name = env_name(key)
    if name in os.environ and get(key, _missing) == value:
        source = f" (set by {name})"
    raise ValueError(f"daskgif.{key} must be {expected}, got {value!r}{source}")


_missing = object()
