"""``daskgif``: the command line. It parses options and prints; the work is in ``daskgif.pipeline.graph``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import click

from daskgif.cliopts import (
    PlainGroup,
    from_file,
    graph_kwargs,
    graph_options,
    params_option,
    schedule_options,
    setup_logging,
)
from daskgif.redact import mask
from daskgif.views.text import summary

__all__ = ["main"]


@click.group("daskgif", cls=PlainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="daskgif")
@click.option("-v", "--verbose", count=True, help="Log task states (-v), or everything, distributed included (-vv).")
def main(verbose: int) -> None:
    """Fetch an image-data file, split it into GIF frames, write every frame, combine them into an animated GIF."""
    setup_logging(verbose)


@main.command()
@graph_options
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Worker processes of the local cluster. Default: CPU cores.")
@click.option("--threads-per-worker", type=click.IntRange(1), default=1, show_default=True,
              help="Threads per worker.")
@click.option("--scheduler", default=None,
              help="sync, threads, processes, or the address of a running cluster (also DASK_SCHEDULER_ADDRESS). "
                   "Default: a new local cluster.")
@click.option("--json", "as_json", is_flag=True, help="Print only the result, as one JSON object per run.")
@click.option("--report", default=None, type=click.Path(dir_okay=False),
              help="Save Dask's performance report (self-contained HTML) of the run(s); needs a cluster.")
@click.option("--keep-dashboard", is_flag=True,
              help="Keep the local cluster and its dashboard up after the run(s) until Ctrl-C or SIGTERM, then exit "
                   "with the runs' status.")
@click.option("--fail-fast", is_flag=True, help="With many inputs: stop a batch at its first input that fails.")
@click.option("--watch", default=None, metavar="LOCATION", help="Watch a folder, prefix or pattern (any fsspec URL): "
              "list it every --every (default 30s) and run each input that is new or changed.")
@click.option("--since-start", is_flag=True, help="With --watch: run only inputs that appear or change from now on.")
@schedule_options
@params_option
@click.pass_context
def run(ctx: click.Context, workers: int | None, threads_per_worker: int, scheduler: str | None, as_json: bool,
        report: str | None, keep_dashboard: bool, fail_fast: bool, watch: str | None, since_start: bool,
        params_file: str | None, **params: Any) -> None:
    """Run the pipeline and print a one-line summary (or the result as JSON).

    The local cluster it starts, and the dashboard link it prints, last while the
    run runs (--keep-dashboard: until Ctrl-C/SIGTERM).  With --every or --cron it
    runs again and again until --max-runs or Ctrl-C/SIGTERM; the local cluster is
    closed for waits over 5 minutes and renewed every
    daskgif.schedule.recycle-every runs.  A stop cancels the run in progress: no frame
    is written and no output replaced after it.  Exit status: 0 all runs
    succeeded, 1 a run failed, 2 bad usage, 130/143 stopped by SIGINT/SIGTERM.

    Several --url, or a pattern ('s3://bucket/dumps/*.img'), run one pipeline per
    input in one computation (a batch, with an id), {name} in --out, --data-file
    and --frames-dir being each input's name.  --watch LOCATION runs such a batch
    of the inputs new or changed at each listing, remembered in a file next to
    --history (else in the current folder).

    --params FILE reads the run's parameters from a YAML or JSON file: build_graph's
    (url, out, ...) and the schedule's (every, cron, cron-tz, max-runs, notify,
    history), e.g. ``every: 24h``; not where it runs nor how it reports (--scheduler,
    --workers, --json, ...).  An option given here overrides the file.
    """
    from zoneinfo import ZoneInfo

    from daskgif.ops.cluster import LOCAL_SCHEDULERS, check_scheduler, starts_cluster
    from daskgif.pipeline.graph import build_graph
    from daskgif.pipeline.parameters import SCHEDULE
    from daskgif.pipeline.steps import check_outputs
    from daskgif.runmany import batch_job
    from daskgif.storage import is_glob

    found = from_file(ctx, params_file)
    given = {**params, **found}  # each value checked by the table, as typed or as read
    kwargs = graph_kwargs(given)
    options = {p.name: given.get(p.name) for p in SCHEDULE}
    if watch is not None and options["every"] is None and options["cron"] is None:
        options["every"] = "30s"
    many = watch is not None or isinstance(kwargs.get("url"), list) or is_glob(kwargs.get("url") or "")
    every, cron, cron_tz = options["every"], options["cron"], options.pop("cron_tz")
    try:
        if watch is not None and kwargs.get("url") or since_start and watch is None:
            raise ValueError("--watch names the inputs: drop --url" if watch else "--since-start needs --watch")
        check_scheduler(scheduler)
        if report and scheduler in LOCAL_SCHEDULERS:
            raise ValueError(f"--report needs a cluster (Dask's performance report reads the scheduler); "
                             f"drop --scheduler {scheduler}")
        if every is not None and cron is not None:
            raise ValueError("--every and --cron are mutually exclusive; give one of them")
        if options["max_runs"] is not None and every is None and cron is None:
            raise ValueError("--max-runs needs --every or --cron")
        if cron_tz is not None and cron is None:
            raise ValueError("--cron-tz needs --cron")
        if keep_dashboard and not starts_cluster(scheduler):
            raise ValueError(f"--keep-dashboard keeps the local cluster that daskgif starts; with "
                             f"{f'--scheduler {scheduler}' if scheduler else 'DASK_SCHEDULER_ADDRESS'} there is none")
        graph = None if many else build_graph(**kwargs)
        if graph is not None:
            check_outputs(graph.params)  # clashing outputs are refused before a cluster starts or anything is fetched
    except (TypeError, ValueError) as e:
        raise click.UsageError(mask(str(e)), ctx) from e
    job = batch_job(ctx, kwargs, found, watch=watch, since_start=since_start, history=options["history"],
                    fail_fast=fail_fast, as_json=as_json) if many else None
    options["tz"] = None if cron_tz is None else ZoneInfo(cron_tz)
    tally, received = run_until_stopped(graph, kwargs, options, scheduler=scheduler, workers=workers,
                                       threads_per_worker=threads_per_worker, as_json=as_json, report=report,
                                       verbose=ctx.find_root().params.get("verbose", 0),
                                       keep_dashboard=keep_dashboard, job=job)
    if received:
        sys.exit(128 + received)
    if not tally["runs"] or tally["failed"]:
        sys.exit(1)


def run_until_stopped(graph: Any, kwargs: dict[str, Any], options: dict[str, Any], *, scheduler: str | None,
                      workers: int | None, threads_per_worker: int, as_json: bool, report: str | None,
                      verbose: int, keep_dashboard: bool = False,
                      job: Any = None) -> tuple[dict[str, Any], int]:
    """Connect, run (once or on a schedule), print each run; return a tally of the runs and the stopping signal.

    A *job* (:func:`daskgif.runmany.batch_job`) makes and prints each run's batch.  The first SIGINT/SIGTERM
    cancels the run in progress, a second one aborts at once; with *keep_dashboard* one only closes the cluster.
    """
    from daskgif.ops.cluster import ConnectError, connect, performance_report, starts_cluster, wait_for
    from daskgif.ops.schedule import describe_due, run_schedule
    from daskgif.views.progress import Progress, fresh_line
    from daskgif.views.text import dashboard_lines

    stop = threading.Event()
    received: dict[str, int] = {}

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            os.write(2, f"{fresh_line()}daskgif: {name} again: aborting now\n".encode())
            raise KeyboardInterrupt
        received["signum"] = signum
        stop.set()
        os.write(2, f"{fresh_line()}daskgif: {name} received: stopping (a second signal aborts at once)\n".encode())

    tally: dict[str, Any] = {"runs": 0, "failed": 0, "last": None, "cancelled": None}

    def on_result(run: Any) -> None:
        tally.update(runs=tally["runs"] + 1, failed=tally["failed"] + (not run.ok), last=run,
                     cancelled=run.number if run.cancelled else tally["cancelled"])
        if job is None:
            show(run, as_json)

    # A link is printed only while it serves: a cluster of our own lives for one run, a schedule's until its
    # next long wait, or (--keep-dashboard) until a signal; a running scheduler's lives on its own.
    private = starts_cluster(scheduler)
    scheduled = options["every"] is not None or options["cron"] is not None
    per_run = private and not keep_dashboard and not report
    serves = ("kept up after the run(s) until Ctrl-C or SIGTERM" if keep_dashboard else
              "while the schedule runs" if scheduled and not per_run else
              "while the cluster is up" if scheduled else "while the run runs") if private else ""
    current: dict[str, Any] = {"client": None}

    @contextlib.contextmanager
    def cluster() -> Iterator[Any]:
        with contextlib.ExitStack() as stack:
            # Worker processes started now inherit an ignored SIGINT: Ctrl-C in a terminal reaches the whole
            # process group, and this process, not each worker, decides what a stop does.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                client = stack.enter_context(connect(
                    scheduler, workers=workers, threads_per_worker=threads_per_worker,
                    silence_logs=logging.INFO if verbose >= 2 else logging.CRITICAL, preload=("daskgif.dashboard",)))
            finally:
                signal.signal(signal.SIGINT, on_signal)
            shown = client is not None and (not as_json or keep_dashboard)
            for line in dashboard_lines(client, serves) if shown else ():
                click.echo(line, err=True)
            current["client"] = client
            stack.callback(current.update, client=None)
            yield client

    def on_wait(number: int, due: float) -> None:
        closed = "; the cluster stops until then" if per_run and current["client"] is None else ""
        click.echo(f"daskgif: next run ({number}) {describe_due(due, time.time(), options['tz'])}{closed}", err=True)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.ExitStack() as stack:
            client = None if per_run else stack.enter_context(cluster())
            if report:  # its "calling code" is the command as typed, secrets masked
                command = mask(shlex.join(["daskgif", *sys.argv[1:]]))
                stack.enter_context(performance_report(client, report, code=command))
            run_schedule(
                kwargs, graph=graph, client=client, cluster=cluster if per_run else None,
                scheduler=scheduler if client is None else None, stop=stop,
                progress=None if as_json else lambda: Progress(client=current["client"]),
                on_result=on_result, on_wait=on_wait if job is None else None, keep=1, job=job, **options)
            if keep_dashboard and not stop.is_set():
                click.echo("daskgif: the dashboard stays up until Ctrl-C or SIGTERM", err=True)
                while not wait_for(stop, 3600):
                    pass
                received.clear()  # the runs had ended: the status is theirs
    except ConnectError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        abort(f"daskgif: aborted after {tally['runs']} run(s)", 128 + received.get("signum", signal.SIGINT))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        name = signal.Signals(received["signum"]).name
        last = tally["last"]
        what = f"run {last.number} was cancelled" if last is not None and tally["cancelled"] == last.number \
            else "no run was in progress"
        click.echo(f"daskgif: stopped by {name} after {tally['runs']} run(s): {what}", err=True)
    return tally, received.get("signum", 0)


def abort(message: str, status: int) -> None:
    """Exit at once with *status*: remove the temporary files and leases of this process, never wait for its threads."""
    from daskgif import storage

    storage.abort_writes()
    click.echo(message, err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def show(run: Any, as_json: bool) -> None:
    """Print one run: its JSON, or its one-line summary (stdout) or error (stderr)."""
    if as_json:
        click.echo(json.dumps(run.to_json()))
    elif run.ok:
        click.echo(summary(run))
    elif not run.cancelled:
        click.echo(f"Error: {run.message}", err=True)
    sys.stdout.flush()


@main.command()
@click.option("--picture", default="graph.svg", show_default=True, type=click.Path(dir_okay=False),
              help="The picture to write: .svg, .png, .pdf, or .dot (Graphviz source). --out is the GIF, as in run.")
@click.option("--max-frames", type=click.IntRange(2), default=3, show_default=True,
              help="The most write-frame nodes drawn; the rest become one node.")
@click.option("--run", "run_record", default=None, metavar="FILE_OR_JSON",
              help="Draw a finished run coloured by state instead: a history file (run --history), a file of "
                   "run --json output, or that JSON itself.")
@click.option("--run-index", type=int, default=None,
              help="Which run of the --run file: 0 the first, -1 the last.  [default: -1]")
@params_option
@graph_options
@click.pass_context
def graph(ctx: click.Context, picture: str, max_frames: int, run_record: str | None, run_index: int | None,
          params_file: str | None, **params: Any) -> None:
    """Draw the pipeline: fetch, split, one write-frame task per frame, combine. Nothing is fetched or written.

    The frame count is read from a data file (or --url) on local disk; otherwise
    the per-frame map is drawn as one node.  With --run, draw a run that happened
    instead: every step coloured by its state, with attempts, counts per state and
    the failed frames (named from --json output; a history line keeps counts).
    """
    from click.core import ParameterSource

    from daskgif.pipeline.graph import build_graph
    from daskgif.views.pictures import FORMATS, draw_pipeline, draw_run, load_run, save_picture

    out = params.get("out")
    if ctx.get_parameter_source("picture") == ParameterSource.DEFAULT and out \
            and os.path.splitext(out)[1].lower() in FORMATS:
        # Deprecated: graph --out named the picture until --out meant the GIF, as in run; drop after one release.
        click.echo(f"daskgif: graph --out now names the GIF, as in run; write the picture with --picture "
                   f"{out} (taken as the picture, for this release only)", err=True)
        picture, params["out"] = out, None
    try:
        if run_record is not None:
            given = [f"--{name.replace('_', '-')}" for name in (*params, "params_file", "max_frames")
                     if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
                     and (name != "out" or params["out"] is not None)]
            if given:
                raise ValueError(f"--run draws a run that happened; {', '.join(given)} "
                                 f"{'does' if len(given) == 1 else 'do'} not apply to it")
            try:
                record = load_run(run_record, -1 if run_index is None else run_index)
            except OSError as e:
                raise click.ClickException(f"cannot read the run record {mask(run_record)}: {mask(str(e))}") from e
            drawn = draw_run(record)
        else:
            if run_index is not None:
                raise ValueError("--run-index needs --run")
            kwargs = graph_kwargs(params, from_file(ctx, params_file))
            if isinstance(kwargs.get("url"), list):
                raise ValueError("graph draws one pipeline: give one --url")
            build_graph(**kwargs)  # validates the arguments as ``run`` does; builds, reads and writes nothing else
            drawn = draw_pipeline(**kwargs, max_frames=max_frames)
        save_picture(drawn, picture)
    except (TypeError, ValueError) as e:
        raise click.UsageError(mask(str(e)), ctx) from e
    except OSError as e:
        raise click.ClickException(f"cannot write {picture}: {e}") from e
    click.echo(f"Wrote {picture}")


@main.command()
@click.argument("file")
@click.option("--last", type=click.IntRange(0), default=20, show_default=True,
              help="How many of the latest runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines instead of a table.")
def history(file: str, last: int, as_json: bool) -> None:
    """Show the last runs recorded in FILE by ``daskgif run --history FILE``."""
    from daskgif.ops.history import format_history, read_history

    try:
        records = read_history(file, last=last)
    except FileNotFoundError:
        raise click.ClickException(f"no history at {mask(file)}") from None
    except OSError as e:
        why = e.strerror if e.filename is not None and e.strerror else e
        raise click.ClickException(f"cannot read the history {mask(file)}: {why}") from None
    except ValueError as e:  # lines, but no run record: not a history file
        click.echo(f"Error: {e}", err=True)
        sys.exit(2)
    if as_json:
        for record in records:
            click.echo(json.dumps(record))
    else:
        click.echo(format_history(records))
