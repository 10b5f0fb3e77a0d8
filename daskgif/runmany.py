"""``daskgif run --url 'data/*.img'``: one clip per input, in one computation, on one cluster.

Each input is its own pipeline (:func:`daskgif.build_graphs`), run by
:func:`daskgif.ops.batch.run_batch`: a line per input (its summary, or its error), then
a total; exit status 1 if any input failed, though the others are written.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from daskgif.redact import mask
from daskgif.views.text import summary

__all__ = ["run_many"]

#: The parameters whose value is a template with ``{name}`` when there are several inputs.
TEMPLATES = ("out", "data_file", "frames_dir")


def run_many(ctx: click.Context, kwargs: dict[str, Any], *, scheduler: str | None, workers: int | None,
             threads_per_worker: int, as_json: bool, fail_fast: bool, verbose: int) -> int:
    """Run one pipeline per input of the pattern in ``kwargs["url"]``; print each and a total; return the status."""
    from click.core import ParameterSource

    from daskgif.ops.batch import run_batch
    from daskgif.ops.cluster import connect
    from daskgif.pipeline.graph import build_graphs
    from daskgif.pipeline.steps import check_outputs

    given = {name: kwargs.get(name) for name in TEMPLATES
             if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)}
    rest = {name: value for name, value in kwargs.items() if name not in ("url", *TEMPLATES)}
    try:
        graphs = build_graphs(kwargs["url"], **given, **rest)
        for graph in graphs:
            check_outputs(graph.params)
    except (TypeError, ValueError) as e:
        raise click.UsageError(mask(str(e)), ctx) from e
    with connect(scheduler, workers=workers, threads_per_worker=threads_per_worker, preload=("daskgif.dashboard",),
                 silence_logs=logging.INFO if verbose >= 2 else logging.CRITICAL) as client:
        runs = run_batch(graphs, client=client, scheduler=scheduler if client is None else None, fail_fast=fail_fast)
    cancelled = sum(run.cancelled for run in runs)
    failed = sum(not run.ok for run in runs) - cancelled
    if as_json:
        click.echo(json.dumps({"ok": not (failed or cancelled), "inputs": len(runs), "failed": failed,
                               "cancelled": cancelled,
                               "runs": [run.to_json() for run in runs]}))
    else:
        for run in runs:
            if run.ok:
                click.echo(f"{mask(run.url)}: {summary(run)}")
            elif run.cancelled:
                click.echo(f"{mask(run.url)}: {run.message}", err=True)
            else:
                click.echo(f"{mask(run.url)}: Error: {run.message}", err=True)
        written = len(runs) - failed - cancelled
        click.echo(f"{len(runs)} input{'s' * (len(runs) != 1)}: {written} written, {failed} failed"
                   f"{f', {cancelled} cancelled' if cancelled else ''}")
    return 1 if failed or cancelled else 0
