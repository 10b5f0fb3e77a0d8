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
def run(workers: int | None, threads_per_worker: int, scheduler: str | None, as_json: bool, report: str | None,
        **params: Any) -> None:
    """Run the pipeline once and print a summary (or the result as JSON)."""
    from daskgif.graph import build_graph

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

