"""``daskgif run`` with many inputs (several ``--url``, a pattern, ``--watch``): each batch, a run of the schedule
loop (:func:`daskgif.ops.watch.run_inputs`), printed as a line per input and a total, or one JSON object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click
from click.core import ParameterSource

from daskgif.ops.watch import Watch, run_inputs, state_path
from daskgif.pipeline.graph import build_graphs
from daskgif.pipeline.steps import check_outputs
from daskgif.redact import mask
from daskgif.storage import local_path
from daskgif.views.text import summary

__all__ = ["batch_job", "show_batch"]

#: The parameters whose value is a template with ``{name}`` when there are several inputs.
TEMPLATES = ("out", "data_file", "frames_dir")


def batch_job(ctx: click.Context, kwargs: dict[str, Any], found: Mapping[str, Any], *, watch: str | None,
              since_start: bool, history: str | None, fail_fast: bool, as_json: bool) -> Callable[..., list]:
    """The job of the schedule loop for many inputs; what can be checked before anything runs is (exit 2).

    *found* holds the parameters read from ``--params``, which make templates as options given do.
    """
    given = {name: kwargs.get(name) for name in TEMPLATES
             if name in found or ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)}
    rest = {**given, **{name: value for name, value in kwargs.items() if name not in ("url", *TEMPLATES)}}
    try:
        if watch is not None:
            job = Watch(watch, rest, state_path(watch, history), since_start=since_start, fail_fast=fail_fast)
            click.echo(f"daskgif: watching {mask(watch)}; what it has seen is kept in {mask(job.state)}", err=True)
            return lambda number, **run: show_batch(job(number, **run), as_json)
        graphs = build_graphs(kwargs["url"], **rest)
        for graph in graphs:
            check_outputs(graph.params)  # clashing outputs are refused before a cluster starts
    except (TypeError, ValueError) as e:
        raise click.UsageError(mask(str(e)), ctx) from e
    return lambda number, **run: show_batch(run_inputs(kwargs["url"], number, kwargs=rest, fail_fast=fail_fast,
                                                       graphs=graphs if number == 1 else None, **run), as_json)


def show_batch(runs: Sequence[Any], as_json: bool) -> Sequence[Any]:
    """Print a batch's runs: a line each and a total, or one JSON object; return them."""
    if not runs:
        return runs
    cancelled = sum(run.cancelled for run in runs)
    failed = sum(not run.ok for run in runs) - cancelled
    if as_json:
        click.echo(json.dumps({"ok": not (failed or cancelled), "batch": runs[0].batch, "inputs": len(runs),
                               "failed": failed, "cancelled": cancelled, "runs": [run.to_json() for run in runs]}))
        return runs
    for run in runs:
        url = shown(run.parameters.get("url", ""))
        if run.ok:
            click.echo(f"{url}: {summary(run)}")
        else:
            click.echo(f"{url}: {'' if run.cancelled else 'Error: '}{run.message}", err=True)
    click.echo(f"{len(runs)} input{'s' * (len(runs) != 1)}: {len(runs) - failed - cancelled} written, {failed} "
               f"failed{f', {cancelled} cancelled' if cancelled else ''} (batch {runs[0].batch})")
    return runs


def shown(url: str, cwd: str | None = None) -> str:
    """*url* as a batch's line names it: a local path under the current folder relative to it, else masked.

    >>> shown("/data/in/a.img", cwd="/data"), shown("/srv/a.img", cwd="/data"), shown("s3://b/a.img", cwd="/data")
    ('in/a.img', '/srv/a.img', 's3://b/a.img')
    """
    local = local_path(url)
    if local is not None and os.path.isabs(local):
        try:
            relative = os.path.relpath(local, cwd or os.getcwd())
        except ValueError:  # another drive
            return mask(url)
        if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
            return relative
    return mask(url)
