"""The run parameters, declared once: one table, from which every other place follows.

:data:`PARAMETERS` lists :func:`daskgif.build_graph`'s parameters, in order;
:data:`SCHEDULE` the options of a run on a schedule (``daskgif run --every``).
Each :class:`Parameter` has a name, a kind of value (:mod:`daskgif.pipeline.kinds`,
which checks it), a default, a help text, the ``dask.config`` key that gives its
default when it is ``None``, and its command-line option.  From the table follow:

- ``build_graph``'s signature (:func:`signature`; :func:`declared` checks it and
  writes the Parameters section of its docstring) and its checks
  (:func:`check_arguments`), which ``draw_pipeline`` shares (:func:`bind`);
- the frozen run settings (:class:`daskgif.pipeline.settings.Params`);
- the options of ``daskgif run`` and ``daskgif graph`` (``daskgif.cli``);
- the keys of a ``--params`` file (:mod:`daskgif.pipeline.paramfile`);
- the parameters page of the documentation (:func:`render`).

Adding a parameter is one entry here, plus its use.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from daskgif.pipeline import kinds
from daskgif.pipeline.kinds import Kind

__all__ = ["Parameter", "PARAMETERS", "SCHEDULE", "DATA", "by_name", "signature", "check_arguments", "bind",
           "declared", "render"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Parameter:
    """One run parameter, as every place that takes it needs it.

    Parameters
    ----------
    name : str
        Its name in Python, in a parameter file and (with ``-`` for ``_``) on the command line.
    kind : Kind
        What its values must be; checks them wherever they come from.
    default : object
        Its default in Python. ``None`` with a *config* key: read from ``dask.config``.
    help : str
        What it means, in a sentence or two: the help of its option, its
        docstring entry and its line in the docs.
    type : str
        Its type, as a numpydoc docstring writes it (``"int"``, ``"str, optional"``).
    config : str, optional
        The key below ``daskgif.`` in ``dask.config`` that gives the default.
    data : bool
        Whether it is data, given on the command line and in files (``on_state`` is code).
    keyword_only : bool
        Whether Python takes it only by keyword.
    metavar : str, optional
        What its option's value is called in ``--help``; default the kind's.
    """

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
            from daskgif import (
                config,  # loads Dask: not on import, so the command line's --help stays quick
            )

            return config.check(self.config, config.get(self.config), self.kind.accepts, self.kind.expected)
        return kinds.check(self.name, value, self.kind)


#: ``build_graph``'s parameters, in the order of its signature.
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("url", kinds.or_none(kinds.TEXT), None, "Where the image-data file comes from: any fsspec URL or "
              "path. Default: the sample shipped inside the package.", "str, optional", metavar="URL"),
    Parameter("data_file", kinds.TEXT, "image-data.img", "Where the fetched file is kept. If it exists, fetch is "
              "Skipped and the file is used as it is (unless force).", "str", metavar="PATH"),
    Parameter("out", kinds.TEXT, "clip.gif", "The animation to write; its suffix chooses the format: .gif, "
              ".webp (lossless), .png (APNG) or .mp4 (extra daskgif[video]).", "str", metavar="PATH"),
    Parameter("frames_dir", kinds.or_none(kinds.TEXT), None, "Folder for frame_00.gif, frame_01.gif, ... "
              "Default: frames next to out.", "str, optional", metavar="PATH"),
    Parameter("delimiter", kinds.DELIMITER, b"\n\n\n\n", "What separates frames in the data file; as text (on "
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


def by_name(name: str) -> Parameter:
    """The parameter called *name* in :data:`PARAMETERS` or :data:`SCHEDULE`.

    >>> by_name("loop").default
    0
    """
    for parameter in (*PARAMETERS, *SCHEDULE):
        if parameter.name == name:
            return parameter
    raise KeyError(name)


def signature() -> inspect.Signature:
    """``build_graph``'s signature, as the table declares it.

    >>> str(signature()).startswith("(url=None, data_file='image-data.img', out='clip.gif', frames_dir=None")
    True
    """
    kind = {False: inspect.Parameter.POSITIONAL_OR_KEYWORD, True: inspect.Parameter.KEYWORD_ONLY}
    return inspect.Signature([inspect.Parameter(p.name, kind[p.keyword_only], default=p.default)
                              for p in PARAMETERS])


def check_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Return every parameter of the table checked: *arguments*, the defaults for the others, config read.

    Parameters
    ----------
    arguments : mapping
        ``build_graph`` arguments by name.

    Raises
    ------
    TypeError
        A name that is not a parameter of ``build_graph``.
    ValueError
        Naming the first bad argument (or configuration key), what it must be and what it got.

    Examples
    --------
    >>> found = check_arguments({"duration": 40})
    >>> found["duration"], found["loop"], found["on_error"]
    (40, 0, 'raise')
    >>> check_arguments({"loop": 1.5})
    Traceback (most recent call last):
    ...
    ValueError: loop must be a non-negative integer up to 65535, got 1.5
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
    """Check that *func* takes the parameters of the table, and write their Parameters section into its docstring.

    The docstring's ``{parameters}`` line becomes one numpydoc entry per parameter.
    A signature that differs from :func:`signature` is a ``TypeError`` on import.
    """
    found = inspect.signature(func)
    wanted = signature()
    listed = inspect.Signature([q.replace(annotation=inspect.Parameter.empty) for q in found.parameters.values()])
    if str(listed) != str(wanted):
        raise TypeError(f"{func.__qualname__}{listed} differs from the table of parameters: {wanted}")
    if func.__doc__ and "{parameters}" in func.__doc__:
        line = next(line for line in func.__doc__.splitlines() if "{parameters}" in line)
        indent = line[: len(line) - len(line.lstrip())]
        func.__doc__ = func.__doc__.replace(line, docstring(indent))
    return func


def docstring(indent: str = "") -> str:
    """The numpydoc entries of :data:`PARAMETERS`, each line starting with *indent*.

    >>> print(docstring().splitlines()[0])
    url : str, optional
    """
    lines = []
    for p in PARAMETERS:
        default = f" Default ``daskgif.{p.config}``." if p.config else ""
        lines += [f"{indent}{p.name} : {p.type}",
                  textwrap.fill(rst(p.help) + default, 88, initial_indent=indent + "    ",
                                subsequent_indent=indent + "    ", break_on_hyphens=False)]
    return "\n".join(lines)


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
