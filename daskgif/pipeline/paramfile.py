"""Run parameters from a file: ``daskgif run --params run.yaml``.

A parameter file is a YAML or JSON mapping of :func:`daskgif.build_graph`
arguments and schedule options, by the names of the table of
:mod:`daskgif.pipeline.parameters` (``data_file``, or ``data-file`` as on the
command line)::

    url: https://example.com/all-images.img
    data_file: /data/image-data.img
    out: s3://bucket/gifs/clip.gif
    storage_options: {anon: false}
    delimiter: '\\r\\n\\r\\n'     # Python escapes; or bytes (!!binary)
    on_error: skip
    frames_per_task: auto
    every: 24h
    history: /var/log/daskgif.jsonl

:func:`load_params` reads one (through fsspec, so any path) and
:func:`check_params` checks it with the table's checks: an unknown key or a bad
value is a ``ValueError`` naming the key.  A parameter file is small and plain:
at most :data:`LIMIT` bytes, a regular file (never a fifo or a device, which
would block or never end), and YAML without aliases (``*name``: a kilobyte of
nested aliases expands to gigabytes).  The schedule options
(:data:`~daskgif.pipeline.parameters.SCHEDULE`) belong in the file because they
describe the job as much as its inputs do; where it runs (``--workers``,
``--scheduler``) stays on the command line.
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


def check_value(parameter: Parameter, value: Any) -> Any:
    """*value* from a file for *parameter*, checked; text read as the command line reads it where the kind
    allows text in files (a delimiter with Python escapes).

    >>> from daskgif.pipeline.parameters import by_name
    >>> check_value(by_name("delimiter"), "\\\\r\\\\n")
    b'\\r\\n'
    """
    kind = parameter.kind
    if kind.text_in_files and isinstance(value, str):
        value = kind.from_text(value)
    return kinds.check(parameter.name, value, kind)


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return *params* checked, keys with ``_`` (``data-file`` is ``data_file``), the delimiter as bytes.

    Parameters
    ----------
    params : mapping
        Keys of :data:`ALLOWED`; ``null`` (``None``) is kept where the
        parameter takes ``None`` (``url``, ``frames_dir``, ``storage_options``),
        and leaves the default for the others.

    Raises
    ------
    ValueError
        Naming the first unknown key (and listing the allowed ones) or the
        first bad value's key.

    Examples
    --------
    >>> check_params({"data-file": "x.img", "delimiter": "\\\\r\\\\n", "every": "24h", "on_error": None})
    {'data_file': 'x.img', 'delimiter': b'\\r\\n', 'every': '24h'}
    >>> check_params({"duraton": 40})
    Traceback (most recent call last):
    ...
    ValueError: unknown parameter 'duraton'; allowed: url, data_file, out, frames_dir, delimiter, duration, loop, \
retries, retry_delay, force, storage_options, on_error, frames_per_task, every, cron, cron_tz, max_runs, notify, history
    >>> check_params({"duration": -1})
    Traceback (most recent call last):
    ...
    ValueError: duration must be a non-negative integer up to 655350, got -1
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
        if value is None and not KEYS[name].kind.accepts(None):
            continue  # null: the default, as if the key were absent
        checked[name] = check_value(KEYS[name], value)
    return checked


def parse_params(text: str, suffix: str = "") -> Any:
    """Parse a parameter file's *text*: JSON for a ``.json`` suffix, else YAML (JSON is YAML too), without aliases.

    >>> parse_params('{"duration": 40}', ".json")
    {'duration': 40}
    >>> parse_params("duration: 40\\ncron: 0 2 * * *\\n")
    {'duration': 40, 'cron': '0 2 * * *'}
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
    """Read and check the parameter file *path* (YAML, or JSON by its ``.json`` suffix or its content).

    Parameters
    ----------
    path : str
        Any fsspec path: ``run.yaml``, ``s3://bucket/jobs/nightly.json``.
    storage_options : dict, optional
        fsspec options for reading *path* (not the run's ``storage_options``).

    Returns
    -------
    dict
        As :func:`check_params` returns it.

    Raises
    ------
    OSError
        *path* cannot be read (``FileNotFoundError`` when it does not exist), is not
        a regular file (a fifo, a device, a folder) or is over :data:`LIMIT` bytes;
        naming *path*.
    ValueError
        Not YAML/JSON, not a mapping, an unknown key or a bad value; the message
        starts with *path*.

    Examples
    --------
    >>> from daskgif import storage
    >>> with storage.atomic_write("memory://daskgif-doctest/run.yaml") as f:
    ...     _ = f.write(b"duration: 40\\nstorage_options: {anon: true}\\ndelimiter: '\\\\n\\\\n'\\n")
    >>> load_params("memory://daskgif-doctest/run.yaml")
    {'duration': 40, 'storage_options': {'anon': True}, 'delimiter': b'\\n\\n'}
    """
    from daskgif import storage

    # Only a regular file, and only LIMIT bytes of it: a fifo would block, /dev/zero never ends.
    data = storage.read_small(path, storage_options, LIMIT, what="a parameter file", follow=True)
    try:
        text = data.decode("utf-8-sig")
        found = parse_params(text, os.path.splitext(path)[1].lower())
        if not isinstance(found, Mapping):
            raise ValueError(f"must hold a mapping of parameter names to values, got {found!r}"[:200])
        return check_params(found)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
