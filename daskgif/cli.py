"""``daskgif``: the command line. It parses options and prints; the work is in ``daskgif.graph``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import click

from daskgif.errors import DaskgifError, RunFailed
from daskgif.result import Result

__all__ = ["main"]

LOCAL_SCHEDULERS = ("sync", "synchronous", "single-threaded", "threads", "processes")


def graph_options(func: Any, out_flag: str = "--out") -> Any:
    """The options shared by every command that builds a graph (``run``, ``graph``).

    *out_flag* names the GIF option: ``graph`` keeps ``--out`` for its picture.
    """
    options = [
        click.option("--url", default=None, help="Image-data file to fetch (any fsspec URL). Default: the embedded sample."),
        click.option("--data-file", default="image-data.img", show_default=True, help="Where the fetched file is kept."),
        click.option(out_flag, "out", default="clip.gif", show_default=True, help="The animated GIF to write."),
        click.option("--frames-dir", default=".", show_default=True, help="Folder for frame_00.gif, frame_01.gif, ..."),
        click.option("--duration", default=100, show_default=True, type=click.IntRange(0, 655350), help="Milliseconds per frame."),
        click.option("--loop", default=0, show_default=True, type=click.IntRange(0, 65535), help="Times to play; 0 loops forever."),
        click.option("--retries", default=2, show_default=True, type=click.IntRange(0), help="Retries of each I/O task."),
        click.option("--retry-delay", default=10.0, show_default=True, type=click.FloatRange(0), help="Seconds between retries."),
        click.option("--force", is_flag=True, help="Fetch again even if the data file exists."),
        click.option("--on-error", type=click.Choice(["raise", "skip"]), default=None, help="Fail on an unreadable frame, or drop it. Default: daskgif.on-error."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def graph_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Turn parsed options into ``build_graph`` arguments."""
    names = ("url", "data_file", "out", "frames_dir", "duration", "loop", "retries", "force", "on_error")
    kwargs = {name: params[name] for name in names}
    delay = params["retry_delay"]
    kwargs["retry_delay"] = int(delay) if float(delay).is_integer() else delay
    return kwargs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="daskgif")
@click.option("-v", "--verbose", count=True, help="Log task states (-v) or everything (-vv).")
def main(verbose: int) -> None:
    """Fetch an image-data file, split it into GIF frames, write every frame, combine them into an animated GIF."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("daskgif").setLevel(level)


@main.command()
@graph_options
@click.option("--workers", type=click.IntRange(1), default=None, help="Worker processes of the local cluster. Default: CPU cores.")
@click.option("--threads-per-worker", type=click.IntRange(1), default=1, show_default=True, help="Threads per worker.")
@click.option("--scheduler", default=None, help="sync, threads, processes, or the address of a running cluster. Default: a new local cluster.")
@click.option("--json", "as_json", is_flag=True, help="Print only the result, as one JSON object.")
@click.option("--report", default=None, type=click.Path(dir_okay=False), help="Save Dask's performance report (HTML) of the run.")
@click.option("--every", default=None, metavar="DURATION", help="Run again every DURATION (24h, 30m, 10s, 1h30m, seconds), on one cluster.")
@click.option("--cron", default=None, metavar="EXPR", help="Run on a cron schedule, e.g. '0 2 * * *' (local time), on one cluster.")
@click.option("--max-runs", type=click.IntRange(1), default=None, help="Stop a schedule after N runs. Default: until Ctrl-C/SIGTERM.")
@click.option("--notify", default=None, metavar="URL", help="POST every run's result as JSON to this http(s) webhook.")
@click.option("--history", default=None, metavar="FILE", help="Append one JSON line per run to FILE (any fsspec path).")
def run(workers: int | None, threads_per_worker: int, scheduler: str | None, as_json: bool, report: str | None,
        **params: Any) -> None:
    """Run the pipeline once and print a summary (or the result as JSON).

    With --every or --cron it runs again and again on one cluster (one summary or
    JSON line per run) until --max-runs or Ctrl-C/SIGTERM, which cancel the run in
    progress on a cluster or let it finish on a local scheduler. Exit status: 0 all
    runs succeeded, 1 a run failed, 2 bad usage, 130/143 stopped by SIGINT/SIGTERM.
    """
    from daskgif.graph import build_graph

    ops = {name: params.pop(name) for name in ("every", "cron", "max_runs", "notify", "history")}
    if any(value is not None for value in ops.values()):
        run_scheduled(graph_kwargs(params), workers, threads_per_worker, scheduler, as_json, report, **ops)
        return
    try:
        graph = build_graph(**graph_kwargs(params))
    except (TypeError, ValueError) as e:
        raise click.UsageError(str(e)) from e
    with connect(scheduler, workers, threads_per_worker, quiet=as_json) as client:
        try:
            result = compute(graph, client, scheduler, progress=not as_json and sys.stderr.isatty(), report=report)
        except RunFailed as e:
            if as_json and isinstance(e.result, Result):
                click.echo(json.dumps(e.result.to_dict()))
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)
        except DaskgifError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(summary(result))


@main.command()
@click.option("--out", "picture", default="graph.svg", show_default=True, type=click.Path(dir_okay=False),
              help="The picture to write: .svg, .png, .pdf, or .dot (Graphviz source).")
@click.option("--max-frames", type=click.IntRange(2), default=3, show_default=True,
              help="The most write-frame nodes drawn; the rest become one node.")
@lambda func: graph_options(func, out_flag="--gif")
def graph(picture: str, max_frames: int, **params: Any) -> None:
    """Draw the pipeline: fetch, split, one write-frame task per frame, combine. Nothing is fetched or written.

    The frame count is read from the data file (or a local --url) when it is on
    local disk; otherwise the per-frame map is drawn as one node.
    """
    from daskgif.graph import build_graph
    from daskgif.picture import draw_pipeline, save_picture

    kwargs = graph_kwargs(params)
    try:
        build_graph(**kwargs)  # validates the arguments as ``run`` does; builds, reads and writes nothing else
        save_picture(draw_pipeline(**kwargs, max_frames=max_frames), picture)
    except (TypeError, ValueError) as e:
        raise click.UsageError(str(e)) from e
    except OSError as e:
        click.echo(f"Error: cannot write {picture}: {e}", err=True)
        sys.exit(1)
    click.echo(f"Wrote {picture}")


@contextlib.contextmanager
def connect(scheduler: str | None, workers: int | None, threads_per_worker: int, quiet: bool) -> Iterator[Any]:
    """Yield a ``distributed.Client`` (a new local cluster or an address), or ``None`` for local schedulers."""
    if scheduler in LOCAL_SCHEDULERS:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        cluster = contextlib.nullcontext(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=threads_per_worker,
                               processes=True, dashboard_address=":0")
    with cluster as address, Client(address) as client:
        if not quiet:
            click.echo(f"Dashboard: {client.dashboard_link}", err=True)
        yield client


def compute(graph: Any, client: Any, scheduler: str | None, progress: bool, report: str | None) -> Result:
    """Run *graph* on *client* (or the local *scheduler*), with a progress bar and a performance report."""
    if client is None:
        return graph.compute(scheduler=scheduler)
    from distributed import performance_report

    with performance_report(filename=report) if report else contextlib.nullcontext():
        future = client.compute(graph)
        if progress:
            show_progress(client, future, str(graph.key).split("-", 1)[1])
        return future.result()


def show_progress(client: Any, future: Any, token: str) -> None:
    """Draw a bar of this run's finished tasks (frames are written in groups) until *future* is done."""

    def count(dask_scheduler: Any, token: str) -> tuple[int, int]:
        mine = [ts for key, ts in dask_scheduler.tasks.items() if token in str(key)]
        return sum(ts.state in ("memory", "erred") for ts in mine), len(mine)

    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    width = 30
    while not done.wait(0.2):
        finished, total = client.run_on_scheduler(count, token=token)
        filled = width * finished // max(total, 1)
        click.echo(f"\r[{'#' * filled}{' ' * (width - filled)}] {finished}/{total} tasks", nl=False, err=True)
    click.echo("\r" + " " * (width + 20) + "\r", nl=False, err=True)


def summary(result: Result) -> str:
    """Describe a finished run in a few lines."""
    counts = "; ".join(
        f"{name}: {', '.join(f'{n} {state}' if n > 1 else state for state, n in per.items())}"
        for name, per in result.counts().items()
    )
    size = "" if result.size is None else f" ({result.size:,} bytes)"
    return (f"Wrote {result.path}{size}: {len(result.frames)} frames in {result.duration:.2f} s\n"
            f"States: {counts}")



def run_scheduled(kwargs: dict[str, Any], workers: int | None, threads_per_worker: int, scheduler: str | None,
                  as_json: bool, report: str | None, every: str | None, cron: str | None, max_runs: int | None,
                  notify: str | None, history: str | None) -> None:
    """``run`` with ``--every``/``--cron``/``--notify``/``--history``: runs on one cluster, reports each one.

    Exit status: 0 when every run succeeded, 1 when any failed, 2 for bad usage;
    stopped by a signal: 130 (SIGINT, Ctrl-C) or 143 (SIGTERM), after the run in
    progress was cancelled (on a cluster) or finished (local schedulers).
    """
    import signal

    from daskgif.graph import build_graph
    from daskgif.notify import check_url
    from daskgif.schedule import Cron, parse_duration, run_schedule

    try:
        if every is not None and cron is not None:
            raise ValueError("--every and --cron are mutually exclusive; give one of them")
        if max_runs is not None and every is None and cron is None:
            raise ValueError("--max-runs needs --every or --cron")
        if every is not None:
            parse_duration(every)
        if cron is not None:
            Cron(cron)
        if notify is not None:
            check_url(notify)
        build_graph(**kwargs)
    except (TypeError, ValueError) as e:
        raise click.UsageError(str(e)) from e

    def show(run: Any) -> None:
        if as_json:
            data = run.result.to_dict() if run.result is not None else {"ok": False, "out": kwargs["out"]}
            click.echo(json.dumps({**data, "ok": run.ok, "run": run.number, "cancelled": run.cancelled,
                                   "message": run.message}), nl=True)
        elif run.result is not None and run.ok:
            click.echo(f"Run {run.number}: {summary(run.result)}")
        else:
            click.echo(f"Run {run.number} {'cancelled' if run.cancelled else 'FAILED'}: {run.message}", err=True)
        sys.stdout.flush()

    stop = threading.Event()
    received: dict[str, Any] = {}

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            os.write(2, f"daskgif: {name} again: aborting now\n".encode())
            raise KeyboardInterrupt
        received.update(signum=signum, name=name, at=time.time())
        stop.set()
        os.write(2, f"daskgif: {name} received: stopping the schedule (a second signal aborts at once)\n".encode())

    runs: list[Any] = []
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.ExitStack() as stack:
            # Worker processes started now inherit an ignored SIGINT: Ctrl-C in a terminal reaches the
            # whole process group, and the schedule, not each worker, decides what a stop does.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                client = stack.enter_context(connect(scheduler, workers, threads_per_worker, quiet=as_json))
            finally:
                signal.signal(signal.SIGINT, on_signal)
            if report and client is not None:
                from distributed import performance_report

                stack.enter_context(performance_report(filename=report))
            try:
                runs = run_schedule(kwargs, every=every, cron=cron, max_runs=max_runs, client=client,
                                    scheduler=None if client is not None else scheduler, notify=notify,
                                    history=history, on_result=lambda run: (runs.append(run), show(run)), stop=stop)
            except (TypeError, ValueError) as e:
                raise click.UsageError(str(e)) from e
    except KeyboardInterrupt:
        click.echo(f"daskgif: aborted after {len(runs)} run(s); tasks running at that moment may have left "
                   f"temporary files", err=True)
        sys.exit(128 + received.get("signum", signal.SIGINT))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        last = runs[-1] if runs else None
        if last is not None and last.cancelled:
            what = f"run {last.number} was cancelled"
        elif last is not None and last.finished >= received["at"]:
            what = f"run {last.number} was finished"
        else:
            what = "no run was in progress"
        click.echo(f"daskgif: stopped by {received['name']} after {len(runs)} run(s): {what}; cluster closed", err=True)
        sys.exit(128 + received["signum"])
    if any(not run.ok for run in runs):
        sys.exit(1)


@main.command()
@click.argument("file")
@click.option("--last", type=click.IntRange(0), default=20, show_default=True, help="How many of the latest runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines instead of a table.")
def history(file: str, last: int, as_json: bool) -> None:
    """Show the last runs recorded in FILE by ``daskgif run --history FILE``."""
    from daskgif.history import format_history, read_history

    try:
        records = read_history(file, last=last)
    except FileNotFoundError:
        click.echo(f"Error: no history at {file}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"Error: cannot read the history {file}: {e}", err=True)
        sys.exit(1)
    if as_json:
        for record in records:
            click.echo(json.dumps(record))
    else:
        click.echo(format_history(records))
