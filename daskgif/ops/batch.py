"""Run many pipelines at once, each on its own: one input's failure never stops the others.

Where ``dask.compute(*graphs)`` raises the first failure, here every input that can be written is written,
and each one's outcome told: on a ``distributed.Client`` the graphs go out together, on a local scheduler
one after another.  Every run's lease is released when the batch ends.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daskgif.errors import RunFailed
from daskgif.ops.cluster import cancel_run
from daskgif.pipeline.graph import Pipeline
from daskgif.redact import mask, scrub

__all__ = ["InputRun", "run_batch"]


@dataclass
class InputRun:
    """How one input of a batch ended: its URL, its result or the failure's message."""

    url: str
    ok: bool
    result: Any = None
    message: str = ""
    duration: float = 0.0
    cancelled: bool = False  # stopped (or never started) because another input failed, with fail_fast

    def to_json(self) -> dict[str, Any]:
        """The input's run as ``daskgif run --json`` prints it inside ``runs``, secrets masked."""
        found = {"ok": False, "out": None, "frames": [], "states": {}} if self.result is None else self.result.to_dict()
        return scrub({**found, "ok": self.ok, "url": self.url, "message": self.message,
                      "cancelled": self.cancelled, "duration": round(self.duration, 3)})


def run_batch(graphs: Sequence[Pipeline], *, client: Any = None, scheduler: str | None = None,
              fail_fast: bool = False) -> list[InputRun]:
    """Compute every graph (of :func:`daskgif.build_graphs`); return one :class:`InputRun` per graph, in order.

    On *client* all graphs run together, else one by one on *scheduler*.  With *fail_fast* the first failure
    cancels what has not ended (and tells so).
    """
    start = time.time()
    try:
        if client is not None:
            return _on_client(graphs, client, fail_fast, start)
        return _locally(graphs, scheduler, fail_fast)
    finally:
        for graph in graphs:  # every run has ended or was given up: no lease waits for daskgif.lock-timeout
            graph.params.lease.release()


def _stopped_by(url: str) -> str:
    return f"cancelled: {mask(url)} failed first (fail_fast)"


def _locally(graphs: Sequence[Pipeline], scheduler: str | None, fail_fast: bool) -> list[InputRun]:
    runs: list[InputRun] = []
    failed = None
    for graph in graphs:
        if fail_fast and failed is not None:
            runs.append(InputRun(graph.params.url, False, message=_stopped_by(failed), cancelled=True))
            continue
        began = time.time()
        try:
            result = graph.compute(scheduler=scheduler)
        except RunFailed as e:
            runs.append(InputRun(graph.params.url, False, e.result, mask(str(e)), time.time() - began))
            failed = graph.params.url
        else:
            runs.append(InputRun(graph.params.url, True, result, "", time.time() - began))
    return runs


def _on_client(graphs: Sequence[Pipeline], client: Any, fail_fast: bool, start: float) -> list[InputRun]:
    from distributed import as_completed

    futures = client.compute(list(graphs))
    ended: dict[Any, InputRun] = {}
    failed = None
    try:
        for future in as_completed(futures, loop=client.loop):
            graph = graphs[futures.index(future)]
            if future.status == "finished":
                ended[future.key] = InputRun(graph.params.url, True, future.result(), "", time.time() - start)
                continue
            error = future.exception() if future.status == "error" else None
            ended[future.key] = InputRun(graph.params.url, False, getattr(error, "result", None),
                                         mask(str(error)) if error is not None else "cancelled",
                                         time.time() - start)
            if fail_fast:
                failed = graph.params.url
                for number, (other, pipeline) in enumerate(zip(futures, graphs), 1):
                    if other.key not in ended:  # its frames stop, and its tasks end, before its lease is released
                        cancel_run(client, other, pipeline.run, timeout=60, number=number)
                break
    finally:
        for future in futures:  # released here, while the client's loop runs, not when garbage collected
            future.release()
    return [ended.get(f.key) or InputRun(g.params.url, False, message=_stopped_by(failed), cancelled=True)
            for f, g in zip(futures, graphs)]
