"""The command line's options, built from the table of parameters and checked by its checks, as the API's are."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import click
from click.core import ParameterSource

from daskgif.pipeline.parameters import DATA, PARAMETERS, SCHEDULE, Parameter, load_params
from daskgif.redact import MaskingFilter, mask

__all__ = ["KindType", "table_option", "table_options", "graph_options", "schedule_options", "params_option",
           "from_file", "graph_kwargs", "setup_logging", "PlainCommand", "PlainGroup"]


class KindType(click.ParamType):
    """A click type made from a parameter of the table: its kind reads the text and checks the value."""

    def __init__(self, parameter: Parameter):
        self.parameter = parameter
        self.name = parameter.metavar or parameter.kind.metavar

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        kind = self.parameter.kind
        found = kind.from_text(value) if isinstance(value, str) else value
        reason = kind.reason(found)
        if reason is not None:
            self.fail(reason, param, ctx)
        return found


def table_option(parameter: Parameter) -> Any:
    """The click option of a parameter of the table (:mod:`daskgif.pipeline.parameters`).

    A default in bytes is shown as typed text (Python escapes); one from ``dask.config`` is named in the help.
    """
    flag = parameter.flag
    if parameter.name == "url":
        return click.option(flag, parameter.name, type=KindType(parameter), multiple=True,
                            help=f"{parameter.help} Repeat it, or give a pattern (data/*.img), to run one pipeline "
                                 "per input.")
    if isinstance(parameter.default, bool):
        return click.option(flag, parameter.name, is_flag=True, default=False, help=parameter.help)
    shown = parameter.shown_default
    if parameter.config is not None:
        return click.option(flag, parameter.name, type=KindType(parameter), default=None,
                            help=f"{parameter.help} Default: {shown}.")
    default = shown if isinstance(parameter.default, bytes) else parameter.default
    return click.option(flag, parameter.name, type=KindType(parameter), default=default, help=parameter.help,
                        show_default=shown is not None)


def table_options(parameters: Iterable[Parameter]) -> Any:
    """A decorator that adds the options of *parameters*, in their order."""
    parameters = list(parameters)

    def add(func: Any) -> Any:
        for parameter in reversed(parameters):
            func = table_option(parameter)(func)
        return func

    return add


#: The options of every command that builds a graph (``run``, ``graph``): one per data parameter.
graph_options = table_options(p for p in PARAMETERS if p.data)
#: The options of a run on a schedule (``--every``, ``--cron``, ...).
schedule_options = table_options(SCHEDULE)


#: ``--params FILE``: parameters from a YAML or JSON file; options given on the command line win.
params_option = click.option("--params", "params_file", default=None, metavar="FILE",
                             help="Read parameters from a YAML or JSON file (any fsspec path); options given on the "
                                  "command line override it.")


def from_file(ctx: click.Context, path: str | None) -> dict[str, Any]:
    """The parameters in the file *path* that no option given explicitly on the command line overrides."""
    if path is None:
        return {}
    try:
        found = load_params(path)
    except FileNotFoundError:
        raise click.BadParameter(f"no such file: {mask(path)}", ctx, param_hint="'--params'") from None
    except OSError as e:  # the path is named once: a fifo, a device, a file too large, ...
        why = e.strerror if e.filename is not None and e.strerror else str(e)
        raise click.BadParameter(f"cannot read {mask(path)}: {mask(why)}", ctx, param_hint="'--params'") from None
    except ValueError as e:
        raise click.UsageError(mask(str(e)), ctx) from None
    defaults = (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    return {name: value for name, value in found.items() if ctx.get_parameter_source(name) in defaults}


def graph_kwargs(params: dict[str, Any], found: dict[str, Any] | None = None) -> dict[str, Any]:
    """``build_graph`` arguments from the options given, and from a file; ``url`` is a list when repeated."""
    given = {**params, **(found or {})}
    if isinstance(given.get("url"), (tuple, list)):
        given["url"] = given["url"][0] if len(given["url"]) == 1 else list(given["url"]) or None
    return {name: given[name] for name in DATA if given.get(name) is not None}


def setup_logging(verbose: int) -> None:
    """Send daskgif's log (masked) to stderr: warnings, task states with ``-v``, everything with ``-vv``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("daskgif: %(message)s" if verbose < 2 else
                                           "%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(MaskingFilter())
    handler.set_name("daskgif-cli")
    log = logging.getLogger("daskgif")
    for old in [h for h in log.handlers if h.get_name() == "daskgif-cli"]:  # main() called again in one process
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel([logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)])


class PlainCommand(click.Command):
    """A command whose help is plain text: reST literals (``x``) lose their backticks (the docs keep them)."""

    def get_help(self, ctx: click.Context) -> str:
        return super().get_help(ctx).replace("``", "")

    def get_short_help_str(self, limit: int = 45) -> str:  # room for the backticks taken out
        return super().get_short_help_str(limit + 2 * (self.help or "").count("``")).replace("``", "")


class PlainGroup(PlainCommand, click.Group):
    command_class = PlainCommand
