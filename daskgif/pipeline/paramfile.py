"""Run parameters from a file: ``daskgif run --params run.yaml``.

A parameter file is a YAML or JSON mapping of :func:`daskgif.build_graph`
arguments and schedule options, by the names of the table of
:mod:`daskgif.pipeline.parameters` (``data_file``, or ``data-file`` as on the
command line); where it runs (``--workers``, ``--scheduler``) stays on the
command line.  A delimiter may be text with Python escapes (``'\\r\\n\\r\\n'``)
or bytes (``!!binary``).  A parameter file is small and plain: at most
:data:`LIMIT` bytes, a regular file (never a fifo or a device, which would block
or never end), and YAML without aliases.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from typing import Any

from daskgif.pipeline import kinds
from daskgif.pipeline.parameters import PARAMETERS, SCHEDULE, Parameter

__all__ = ["load_params", "check_params", "parse_params", "ALLOWED"]

#: Every key a parameter file may hold: ``build_graph``'s data parameters, then the schedule options.
KEYS: dict[str, Parameter] = {p.name: p for p in (*PARAMETERS, *SCHEDULE) if p.data}
ALLOWED: tuple[str, ...] = tuple(KEYS)

#: The largest parameter file read, in bytes: a few hundred bytes is typical.
LIMIT = 2**20


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return *params* checked, keys with ``_``, text read as the command line reads it where the kind allows
    text in files (a delimiter); ``null`` leaves the default of a parameter that takes no ``None``.

    >>> check_params({"data-file": "x.img", "delimiter": "\\\\r\\\\n", "every": "24h", "on_error": None})
    {'data_file': 'x.img', 'delimiter': b'\\r\\n', 'every': '24h'}
    >>> check_params({"duraton": 40})
    Traceback (most recent call last):
    ...
    ValueError: unknown parameter 'duraton'; allowed: url, data_file, out, frames_dir, delimiter, duration, loop, \
retries, retry_delay, force, storage_options, on_error, frames_per_task, every, cron, cron_tz, max_runs, notify, history
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"parameters must be a mapping of names to values, got {params!r}")
    checked: dict[str, Any] = {}
    for key, value in params.items():
        name = key.replace("-", "_") if isinstance(key, str) else key
        if name not in KEYS:
            raise ValueError(f"unknown parameter {key!r}; allowed: {', '.join(ALLOWED)}")
        if name in checked:
            raise ValueError(f"parameter {name!r} is given twice")
        kind = KEYS[name].kind
        if value is None and not kind.accepts(None):
            continue  # null: the default, as if the key were absent
        checked[name] = kinds.check(name, kind.from_text(value) if kind.text_in_files and isinstance(value, str)
                                    else value, kind)
    return checked


def parse_params(text: str, suffix: str = "") -> Any:
    """Parse a parameter file's *text*: JSON for a ``.json`` suffix, else YAML (JSON is YAML too), without aliases.

    >>> parse_params('{"duration": 40}', ".json"), parse_params("duration: 40\\ncron: 0 2 * * *\\n")
    ({'duration': 40}, {'duration': 40, 'cron': '0 2 * * *'})
    >>> parse_params("a: &a [1, 2]\\nurl: *a\\n")
    Traceback (most recent call last):
    ...
    ValueError: uses the alias *a (line 2): a parameter file may not repeat a value by alias
    """
    import yaml

    try:
        if suffix == ".json":
            try:
                return json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"is not valid JSON: {e}") from None
        try:
            return yaml.load(text, Loader=loader())  # noqa: S506 - a SafeLoader, see loader()
        except yaml.YAMLError as e:
            raise ValueError(f"is not valid YAML or JSON: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ValueError("nests its values too deeply") from None


@functools.cache
def loader() -> type:
    """YAML's safe loader without aliases (made on first use: importing ``yaml`` slows ``--help``).

    An alias (``*a``, also in a merge key ``<<: *a``) repeats a value by reference, so nine
    nested levels of nine aliases each make 387 million strings of a one-kilobyte file:
    the "billion laughs".  Parameters never need one.
    """
    import yaml

    class ParamsLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise ValueError(f"uses the alias *{event.anchor} (line {event.start_mark.line + 1}): a parameter "
                                 "file may not repeat a value by alias")
            return super().compose_node(parent, index)

    return ParamsLoader


def load_params(path: str, storage_options: dict | None = None) -> dict[str, Any]:
    """Read and check the parameter file *path*, any fsspec path (YAML, or JSON by its ``.json`` suffix).

    *storage_options* are for reading *path*, not the run's.  Returns what
    :func:`check_params` returns; raises ``OSError`` (``FileNotFoundError``) naming
    *path* when it cannot be read, is no regular file or is over :data:`LIMIT`
    bytes, and ``ValueError`` starting with *path* on anything else.

    >>> from daskgif import storage
    >>> with storage.atomic_write("memory://daskgif-doctest/run.yaml") as f:
    ...     _ = f.write(b"duration: 40\\nstorage_options: {anon: true}\\ndelimiter: '\\\\n\\\\n'\\n")
    >>> load_params("memory://daskgif-doctest/run.yaml")
    {'duration': 40, 'storage_options': {'anon': True}, 'delimiter': b'\\n\\n'}
    """
    from daskgif import storage

    data = storage.read_small(path, storage_options, LIMIT, what="a parameter file", follow=True)
    try:
        found = parse_params(data.decode("utf-8-sig"), os.path.splitext(path)[1].lower())
        if not isinstance(found, Mapping):
            raise ValueError(f"must hold a mapping of parameter names to values, got {found!r}"[:200])
        return check_params(found)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
