"""Run many pipelines at once, each on its own: one input's failure never stops the others.

Where ``dask.compute(*graphs)`` raises the first failure, here every input that can be written is written,
and each one's outcome told: on a ``distributed.Client`` the graphs go out together, on a local scheduler
one after another.  *fail_fast* cancels what is left at the first failure, a *stop* (SIGINT/SIGTERM) all that
has not ended.  Every run's lease is released when the batch ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from daskgif.errors import Cancelled, RunFailed
from daskgif.ops.cluster import cancel_run, compute, wait_for
from daskgif.pipeline.graph import Pipeline
from daskgif.redact import mask

__all__ = ["InputRun", "run_batch"]


@dataclass
class InputRun:
    """How one input of a batch ended: its URL, its result or the failure's message, when it started."""

    url: str
    ok: bool
    result: Any = None
    message: str = ""
    duration: float = 0.0
    cancelled: bool = False  # stopped (or never started): another input failed (fail_fast), or a stop
    started: float | None = None


def run_batch(graphs: Sequence[Pipeline], *, client: Any = None, scheduler: str | None = None,
              fail_fast: bool = False, stop: threading.Event | None = None) -> list[InputRun]:
    """Compute every graph (of :func:`daskgif.build_graphs`); return one :class:`InputRun` per graph, in order.

    On *client* all graphs run together, else one by one on *scheduler*.  With *fail_fast* the first failure
    cancels what has not ended (and tells so); so does setting *stop*.
    """
    start, stop = time.time(), stop or threading.Event()
    try:
        if client is not None:
            return _on_client(graphs, client, fail_fast, start, stop)
        return _locally(graphs, scheduler, fail_fast, stop)
    finally:
        for graph in graphs:  # every run has ended or was given up: no lease waits for daskgif.lock-timeout
            graph.params.lease.release()


def _stopped_by(url: str | None) -> str:
    return "cancelled by a stop request" if url is None else f"cancelled: {mask(url)} failed first (fail_fast)"


def _locally(graphs: Sequence[Pipeline], scheduler: str | None, fail_fast: bool,
             stop: threading.Event) -> list[InputRun]:
    runs: list[InputRun] = []
    failed = None
    for number, graph in enumerate(graphs, 1):
        if fail_fast and failed is not None or stop.is_set():
            runs.append(InputRun(graph.params.url, False, message=_stopped_by(failed), cancelled=True))
            continue
        began = time.time()
        try:
            result = compute(graph, scheduler=scheduler, stop=stop, number=number)
        except Cancelled:
            runs.append(InputRun(graph.params.url, False, None, _stopped_by(None), time.time() - began, True, began))
        except RunFailed as e:
            runs.append(InputRun(graph.params.url, False, e.result, mask(str(e)), time.time() - began, started=began))
            failed = graph.params.url
        else:
            runs.append(InputRun(graph.params.url, True, result, "", time.time() - began, started=began))
    return runs


def _completed(futures: list, client: Any, stop: threading.Event) -> Iterator[Any]:
    """The *futures* as they end; ``None`` once *stop* is set."""
    from distributed import as_completed

    pending = as_completed(futures, loop=client.loop)
    while not pending.is_empty():
        if pending.has_ready():
            yield from pending.next_batch(block=False)
        elif stop.is_set():
            yield None
        else:
            wait_for(stop, 0.05)


def _on_client(graphs: Sequence[Pipeline], client: Any, fail_fast: bool, start: float,
               stop: threading.Event) -> list[InputRun]:
    futures = client.compute(list(graphs))
    ended: dict[Any, InputRun] = {}
    failed = None
    try:
        for future in _completed(futures, client, stop):
            if future is None:  # a stop: what has not ended is cancelled
                _cancel(client, futures, graphs, ended)
                break
            graph = graphs[futures.index(future)]
            if future.status == "finished":
                ended[future.key] = InputRun(graph.params.url, True, future.result(), "", time.time() - start,
                                             started=start)
                continue
            error = future.exception() if future.status == "error" else None
            ended[future.key] = InputRun(graph.params.url, False, getattr(error, "result", None),
                                         mask(str(error)) if error is not None else "cancelled",
                                         time.time() - start, started=start)
            if fail_fast:
                failed = graph.params.url
                _cancel(client, futures, graphs, ended)
                break
    finally:
        for future in futures:  # released here, while the client's loop runs, not when garbage collected
            future.release()
    return [ended.get(f.key) or InputRun(g.params.url, False, message=_stopped_by(failed), cancelled=True)
            for f, g in zip(futures, graphs)]


def _cancel(client: Any, futures: list, graphs: Sequence[Pipeline], ended: dict) -> None:
    for number, (future, graph) in enumerate(zip(futures, graphs), 1):
        if future.key not in ended:  # its frames stop, and its tasks end, before its lease is released
            cancel_run(client, future, graph.run, timeout=60, number=number)
