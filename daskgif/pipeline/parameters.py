"""The run parameters, declared once: :data:`PARAMETERS` (:func:`daskgif.build_graph`'s, in order) and
:data:`SCHEDULE` (a run on a schedule).  From this table follow ``build_graph``'s signature (:func:`declared`)
and checks, the command-line options, the keys of a parameter file (:func:`load_params`) and the docs page.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from daskgif.gif.split import DELIMITER
from daskgif.pipeline import kinds
from daskgif.pipeline.kinds import Kind

__all__ = ["Parameter", "PARAMETERS", "SCHEDULE", "DATA", "by_name", "signature", "check_arguments", "bind",
           "declared", "render", "load_params", "check_params", "parse_params", "ALLOWED"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Parameter:
    """One run parameter: its *name*, the *kind* that checks it, its *default* (``None`` with a *config* key:
    ``daskgif.<config>``), *help* and numpydoc *type*, whether it is *data* (``on_state`` is code: Python only)
    or *keyword_only*, and its *metavar*."""

    name: str
    kind: Kind
    default: Any
    help: str
    type: str
    config: str | None = None
    data: bool = True
    keyword_only: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str | None:
        """Its command-line option, ``--data-file``; ``None`` for code (``on_state``).

        >>> by_name("retry_delay").flag, by_name("on_state").flag
        ('--retry-delay', None)
        """
        return f"--{self.name.replace('_', '-')}" if self.data else None

    @property
    def shown_default(self) -> str | None:
        """The default as the command line writes it, or ``None`` where it has none to show.

        >>> by_name("delimiter").shown_default, by_name("on_error").shown_default, by_name("url").shown_default
        ('\\\\n\\\\n\\\\n\\\\n', 'daskgif.on-error', None)
        """
        if self.config is not None:
            return f"daskgif.{self.config}"
        if self.default is None or isinstance(self.default, bool):
            return None
        return repr(self.default)[2:-1] if isinstance(self.default, bytes) else str(self.default)

    def check(self, value: Any) -> Any:
        """Return *value* checked; ``None`` with a config key is that key's value, checked as the key.

        >>> by_name("duration").check(-1)
        Traceback (most recent call last):
        ...
        ValueError: duration must be a non-negative integer up to 655350, got -1
        """
        if value is None and self.config is not None:
            from daskgif import config  # loads Dask: not on import, so the command line's --help stays quick

            return config.check(self.config, config.get(self.config), self.kind.accepts, self.kind.expected)
        return kinds.check(self.name, value, self.kind)


#: ``build_graph``'s parameters, in the order of its signature.
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("url", kinds.or_none(kinds.TEXT), None, "Where the image-data file comes from: any fsspec URL or "
              "path. Default: the sample shipped inside the package.", "str, optional", metavar="URL"),
    Parameter("data_file", kinds.TEXT, "image-data.img", "Where the fetched file is kept, with a record of its "
              "source: fetch is Skipped while the record says it is what the URL gave (unless force); a file "
              "without one is replaced.", "str", metavar="PATH"),
    Parameter("out", kinds.TEXT, "clip.gif", "The animation to write; its suffix chooses the format: .gif, "
              ".webp (lossless), .png (APNG) or .mp4 (extra daskgif[video]). In out, data_file and frames_dir, "
              "{name} and {suffix} stand for the URL's file name and suffix.", "str", metavar="PATH"),
    Parameter("frames_dir", kinds.or_none(kinds.TEXT), None, "Folder for frame_00.gif, frame_01.gif, ... "
              "Default: frames next to out.", "str, optional", metavar="PATH"),
    Parameter("delimiter", kinds.DELIMITER, DELIMITER, "What separates frames in the data file; as text (on "
              "the command line, in files) with Python escapes, e.g. '\\r\\n\\r\\n'.", "bytes"),
    Parameter("duration", kinds.integer(0, 655350), 100, "Milliseconds per frame (GIF stores hundredths of a "
              "second in 16 bits).", "int"),
    Parameter("loop", kinds.integer(0, 65535), 0, "How many times the animation plays; 0 loops forever.", "int"),
    Parameter("retries", kinds.INTEGER, 2, "Attempts after the first, for the I/O tasks; only transient errors "
              "are retried.", "int"),
    Parameter("retry_delay", kinds.SECONDS, 10, "Seconds before the first retry of an I/O task.", "float"),
    Parameter("force", kinds.FLAG, False, "Fetch again even when data_file exists.", "bool"),
    Parameter("storage_options", kinds.STORAGE_OPTIONS, None, "Passed to fsspec for every path; on the command "
              "line a JSON object.", "dict, optional", metavar="JSON"),
    Parameter("on_error", kinds.choice("raise", "skip"), None, "What an unreadable frame does: 'raise' fails "
              "the run, 'skip' drops the frame and reports it as Skipped.", "{'raise', 'skip'}, optional",
              config="on-error", keyword_only=True),
    Parameter("frames_per_task", kinds.FRAMES_PER_TASK, None, "How many frames one write-frame task writes: "
              "a positive integer, or 'auto' for a few tasks per worker thread.", "int or 'auto', optional",
              config="frames-per-task", keyword_only=True),
    Parameter("on_state", kinds.HOOKS, (), "Called on the client with each step's State as it changes, and "
              "with the state of each frame that was not a plain success, while compute() runs.",
              "sequence of callables, optional", data=False, keyword_only=True),
)

#: The options of a run on a schedule: ``daskgif run --every ...`` and keys of a parameter file.
SCHEDULE: tuple[Parameter, ...] = (
    Parameter("every", kinds.DURATION, None, "Run again every DURATION (24h, 30m, 10s, 1h30m, seconds), on one "
              "cluster.", "str or float, optional", metavar="DURATION"),
    Parameter("cron", kinds.CRON, None, "Run on a cron schedule, e.g. '0 2 * * *', on one cluster.",
              "str, optional", metavar="EXPR"),
    Parameter("cron_tz", kinds.ZONE, None, "Time zone of cron, e.g. Europe/Oslo. Default: the local one.",
              "str, optional", metavar="ZONE"),
    Parameter("max_runs", kinds.POSITIVE_INTEGER, None, "Stop a schedule after this many runs. Default: until "
              "Ctrl-C/SIGTERM.", "int, optional", metavar="N"),
    Parameter("notify", kinds.WEBHOOK, None, "POST every run's result as JSON to this http(s) webhook.",
              "str, optional", metavar="URL"),
    Parameter("history", kinds.TEXT, None, "Append one JSON line per run to this file (any fsspec path).",
              "str, optional", metavar="FILE"),
)

#: The names of ``build_graph``'s data parameters: its options, its file keys, the arguments a run records.
DATA: tuple[str, ...] = tuple(p.name for p in PARAMETERS if p.data)
BY_NAME: dict[str, Parameter] = {p.name: p for p in (*PARAMETERS, *SCHEDULE)}


def by_name(name: str) -> Parameter:
    """The parameter called *name* in :data:`PARAMETERS` or :data:`SCHEDULE`.

    >>> by_name("loop").default
    0
    """
    return BY_NAME[name]


def signature() -> inspect.Signature:
    """``build_graph``'s signature, as the table declares it.

    >>> str(signature()).startswith("(url=None, data_file='image-data.img', out='clip.gif', frames_dir=None")
    True
    """
    kind = {False: inspect.Parameter.POSITIONAL_OR_KEYWORD, True: inspect.Parameter.KEYWORD_ONLY}
    return inspect.Signature([inspect.Parameter(p.name, kind[p.keyword_only], default=p.default)
                              for p in PARAMETERS])


def check_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Return every parameter checked: *arguments* by name (unknown: ``TypeError``), defaults, config read.

    >>> {k: v for k, v in check_arguments({"duration": 40}).items() if k in ("duration", "loop", "on_error")}
    {'duration': 40, 'loop': 0, 'on_error': 'raise'}
    """
    unknown = set(arguments) - {p.name for p in PARAMETERS}
    if unknown:
        raise TypeError(f"build_graph() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    return {p.name: p.check(arguments.get(p.name, p.default)) for p in PARAMETERS}


def bind(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Bind arguments as ``build_graph`` takes them, and check them all (:func:`check_arguments`).

    >>> bind("https://example.com/a.img", out="a.gif")["url"]
    'https://example.com/a.img'
    """
    return check_arguments(signature().bind(*args, **kwargs).arguments)


def declared(func: F) -> F:
    """Check that *func* takes the table's parameters, and write their numpydoc entries for ``{parameters}``."""
    wanted = signature()
    found = inspect.Signature([q.replace(annotation=inspect.Parameter.empty)
                               for q in inspect.signature(func).parameters.values()])
    if str(found) != str(wanted):
        raise TypeError(f"{func.__qualname__}{found} differs from the table of parameters: {wanted}")
    line = next((line for line in (func.__doc__ or "").splitlines() if "{parameters}" in line), None)
    if line is not None:
        indent = line[: len(line) - len(line.lstrip())]
        entries = [f"{indent}{p.name} : {p.type}\n" + textwrap.fill(
            rst(p.help) + (f" Default ``daskgif.{p.config}``." if p.config else ""), 88, break_on_hyphens=False,
            initial_indent=indent + "    ", subsequent_indent=indent + "    ") for p in PARAMETERS]
        func.__doc__ = func.__doc__.replace(line, "\n".join(entries))  # type: ignore[union-attr]
    return func


def render(table: tuple[Parameter, ...] = PARAMETERS) -> str:
    """*table* as the reStructuredText of the parameters page (``.. daskgif-parameters::``).

    >>> print(render(SCHEDULE).splitlines()[8])
       * - ``every``
    """
    rows = [".. list-table::", "   :header-rows: 1", "   :widths: 20 22 20 38", "",
            "   * - Python and file key", "     - command line", "     - default", "     - meaning"]
    for p in table:
        default = f"``daskgif.{p.config}``" if p.config else f"``{p.default!r}``"
        rows += [f"   * - ``{p.name}``", f"     - ``{p.flag}``" if p.flag else "     - (Python only)",
                 f"     - {default}", f"     - {rst(p.help)}"]
    return "\n".join(rows) + "\n"


def rst(text: str) -> str:
    r"""*text* as reStructuredText shows it: backslashes and stars escaped.

    >>> print(rst(r"e.g. '\r\n' or '0 2 * * *'"))
    e.g. '\\r\\n' or '0 2 \* \* \*'
    """
    return text.replace("\\", "\\\\").replace("*", "\\*")


#: Every key a parameter file (``daskgif run --params run.yaml``) may hold: data parameters, schedule options.
KEYS: dict[str, Parameter] = {p.name: p for p in (*PARAMETERS, *SCHEDULE) if p.data}
ALLOWED: tuple[str, ...] = tuple(KEYS)

#: The largest parameter file read, in bytes (a few hundred is typical).
LIMIT = 2**20


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return *params* checked, keys with ``_``, text read as on the command line where the kind allows it
    (a delimiter); ``null`` leaves the default of a parameter that takes no ``None``.

    >>> check_params({"data-file": "x.img", "delimiter": "\\\\r\\\\n", "every": "24h", "on_error": None})
    {'data_file': 'x.img', 'delimiter': b'\\r\\n', 'every': '24h'}
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
            return json.loads(text)
        return yaml.load(text, Loader=loader())  # noqa: S506 - a SafeLoader, see loader()
    except json.JSONDecodeError as e:
        raise ValueError(f"is not valid JSON: {e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"is not valid YAML or JSON: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ValueError("nests its values too deeply") from None


@functools.cache
def loader() -> type:
    """YAML's safe loader without aliases, made on first use (importing ``yaml`` slows ``--help``).

    An alias (``*a``, ``<<: *a``) repeats a value: nine levels of nine make 387 million strings of 1 kB."""
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

    An ``OSError`` names *path* that cannot be read, is no regular file or is over :data:`LIMIT` bytes;
    a ``ValueError`` starts with *path*.

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
