"""Many inputs as runs of the schedule loop: a batch of inputs in one computation, and a watched location.

A batch runs each pipeline on its own (:func:`run_batch`): one input's failure never stops the others.
:class:`Watch` runs, at each listing, the inputs that are new or changed since what its state file
remembers; that file keeps only inputs whose run succeeded, so a failed one is tried again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from daskgif import storage
from daskgif.errors import Cancelled, RunFailed
from daskgif.ops.cluster import cancel_runs, compute, wait_for
from daskgif.ops.schedule import ScheduledRun
from daskgif.pipeline.graph import Pipeline, build_graphs, new_batch
from daskgif.redact import mask, safe_parameters

__all__ = ["run_inputs", "run_batch", "Watch", "state_path", "changed", "remember"]

logger = logging.getLogger(__name__)

#: A listing: each input's URL and what tells its versions apart, ``(size, version)``.
Listing = Mapping[str, Sequence]


def run_inputs(urls: str | Sequence[str], number: int = 1, *, kwargs: Mapping[str, Any] | None = None,
               graphs: Sequence[Any] | None = None, fail_fast: bool = False, scheduled: float | None = None,
               **run: Any) -> list[ScheduledRun]:
    """Run one pipeline per input as one batch: one :class:`ScheduledRun` per input, each with the batch's id.

    *urls* and *kwargs* go to :func:`daskgif.build_graphs` (unless *graphs* are built), *run* to :func:`run_batch`.
    A batch that cannot be built (two inputs would write one path, say) is a failed run per input: a watch goes on.
    """
    began = time.time()
    batch = graphs[0].params.batch if graphs else new_batch()
    try:
        graphs = graphs or build_graphs(urls, batch=batch, **(kwargs or {}))
    except (OSError, ValueError, TypeError) as e:
        return [ScheduledRun(number, scheduled or began, began, time.time(), False, message=mask(str(e)),
                             parameters=safe_parameters({**(kwargs or {}), "url": url}), batch=batch)
                for url in ([urls] if isinstance(urls, str) else urls)]
    return [ScheduledRun(number, scheduled or began, parameters=safe_parameters(g.params.arguments), batch=batch, **r)
            for r, g in zip(run_batch(graphs, fail_fast=fail_fast, **run), graphs)]


def run_batch(graphs: Sequence[Pipeline], *, client: Any = None, scheduler: str | None = None,
              fail_fast: bool = False, stop: threading.Event | None = None) -> list[dict[str, Any]]:
    """Compute every graph on its own; return how each ended, as :class:`ScheduledRun` fields, in order.

    On *client* the graphs run together, else one by one on *scheduler*.  *fail_fast* cancels what has not ended
    at the first failure, setting *stop* all of it.  Every run's lease is released at the end.
    """
    stop = stop or threading.Event()
    try:
        if client is not None:
            return _on_client(graphs, client, fail_fast, stop)
        return _locally(graphs, scheduler, fail_fast, stop)
    finally:
        for graph in graphs:  # every run has ended or was given up: no lease waits for daskgif.lock-timeout
            graph.params.lease.release()


def _ended(started: float | None, ok: bool, result: Any = None, message: str = "", cancelled: bool = False) -> dict:
    now = time.time()  # a run never started ends as it starts
    return dict(started=now if started is None else started, finished=now, ok=ok, result=result, message=message,
                cancelled=cancelled)


def _stopped(url: str | None) -> dict:
    message = "cancelled by a stop request" if url is None else f"cancelled: {mask(url)} failed first (fail_fast)"
    return _ended(None, False, message=message, cancelled=True)


def _locally(graphs: Sequence[Pipeline], scheduler: str | None, fail_fast: bool,
             stop: threading.Event) -> list[dict[str, Any]]:
    runs, failed = [], None
    for number, graph in enumerate(graphs, 1):
        if fail_fast and failed is not None or stop.is_set():
            runs.append(_stopped(failed))
            continue
        began = time.time()
        try:
            runs.append(_ended(began, True, compute(graph, scheduler=scheduler, stop=stop, number=number)))
        except Cancelled:
            runs.append({**_stopped(None), "started": began})
        except RunFailed as e:
            runs.append(_ended(began, False, e.result, mask(str(e))))
            failed = graph.params.url
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


def _on_client(graphs: Sequence[Pipeline], client: Any, fail_fast: bool,
               stop: threading.Event) -> list[dict[str, Any]]:
    start, futures = time.time(), client.compute(list(graphs))
    ended: dict[Any, dict] = {}
    failed = None
    try:
        for future in _completed(futures, client, stop):
            if future is None:  # a stop: what has not ended is cancelled
                _cancel(client, futures, graphs, ended)
                break
            if future.status == "finished":
                ended[future.key] = _ended(start, True, future.result())
                continue
            error = future.exception() if future.status == "error" else None
            ended[future.key] = _ended(start, False, getattr(error, "result", None),
                                       "cancelled" if error is None else mask(str(error)))
            if fail_fast:
                failed = graphs[futures.index(future)].params.url
                _cancel(client, futures, graphs, ended)
                break
    finally:
        for future in futures:  # released here, while the client's loop runs, not when garbage collected
            future.release()
    return [ended.get(future.key) or _stopped(failed) for future in futures]


def _cancel(client: Any, futures: list, graphs: Sequence[Pipeline], ended: dict) -> None:
    # All at once: their frames stop, and their tasks end, before their leases are released.
    cancel_runs(client, {number: (future, graph.run) for number, (future, graph) in enumerate(zip(futures, graphs), 1)
                         if future.key not in ended}, timeout=60)


def state_path(location: str, history: str | None = None) -> str:
    """Where a watch of *location* keeps what it has seen: next to the *history* file, else in the current folder.

    >>> state_path("s3://bucket/dumps/*.img", "s3://bucket/logs/history.jsonl")
    's3://bucket/logs/.daskgif-watch-ef5a7f1aaa5e.json'
    >>> state_path("in/")
    '.daskgif-watch-39154c0a1c87.json'
    """
    head, sep, _ = (history or "").rpartition("/")
    return f"{head}{sep}.daskgif-watch-{hashlib.sha256(location.encode()).hexdigest()[:12]}.json"


def changed(listing: Listing, seen: Listing) -> list[str]:
    """The inputs of *listing* that are new, or changed (size or version), since the listing *seen*.

    >>> changed({"a": (3, "e1"), "b": (4, "e2"), "c": (5, "e3")}, {"a": [3, "e1"], "b": [4, "e0"]})
    ['b', 'c']
    """
    return [url for url, found in listing.items() if list(found) != list(seen.get(url, ()))]


def remember(seen: Listing, listing: Listing, done: Sequence[str]) -> dict[str, list]:
    """What a watch has seen after a turn: the inputs still listed that it had seen, and those *done* now.

    An input whose run failed keeps what was seen before, so it is tried again; one no longer listed is forgotten.

    >>> remember({"a": [3, "e1"], "gone": [1, "x"]}, {"a": (3, "e1"), "b": (4, "e2"), "c": (5, "e3")}, ["b"])
    {'a': [3, 'e1'], 'b': [4, 'e2']}
    """
    return {url: list(listing[url] if url in done else seen[url]) for url in listing if url in done or url in seen}


class Watch:
    """The job of ``daskgif run --watch``: each call lists *location* once and runs what is new or changed.

    *location* is a folder, prefix or pattern on any fsspec file system, *kwargs* the other arguments of
    :func:`daskgif.build_graphs`, *state* the state file (:func:`state_path`).  With *since_start*, what the
    first listing finds counts as seen.  A new or changed input is fetched anew (``force``).  An input whose run
    failed is tried again at once if it changes, else after 2, 4, 8, ... listings (:meth:`due`).

    >>> import fsspec, daskgif
    >>> fsspec.filesystem("memory").pipe("/doc-watch/new/a.img", open(daskgif.sample_path(), "rb").read())
    >>> watch = Watch("memory://doc-watch/new/*.img", {"out": "memory://doc-watch/{name}.gif",
    ...               "data_file": "memory://doc-watch/data/{name}.img", "frames_dir": "memory://doc-watch/f/{name}"},
    ...               "memory://doc-watch/seen.json")
    >>> [(run.ok, run.parameters["out"]) for run in watch(1, scheduler="sync")], watch(2, scheduler="sync")
    ([(True, 'memory://doc-watch/a.gif')], [])
    """

    def __init__(self, location: str, kwargs: Mapping[str, Any], state: str, *, since_start: bool = False,
                 fail_fast: bool = False):
        self.location, self.kwargs, self.state, self.fail_fast = location, kwargs, state, fail_fast
        self.options, self.since_start = kwargs.get("storage_options"), since_start
        self.failed: dict[str, tuple[list, int, int]] = {}  # url -> (its version, failures, the listing it is due)
        self.listings = 0  # its own count: a listing with nothing to run is no run of the schedule
        try:
            self.seen = json.loads(storage.read_small(state, self.options, 2**27, what="a watch's state file"))
        except FileNotFoundError:
            self.seen = {}
        except ValueError as e:
            raise ValueError(f"the watch's state file {mask(state)} is not JSON ({e}): remove it to start afresh "
                             "(every input is then new)") from None

    def __call__(self, number: int, **run: Any) -> list[ScheduledRun]:
        try:
            listing = storage.list_inputs(self.location, self.options)
        except OSError as e:  # the store is down, say: the next listing tries again
            logger.error("Cannot list %s: %s", mask(self.location), mask(str(e)))
            return []
        self.listings += 1
        new = [] if self.since_start else changed(listing, self.seen)
        waiting = [url for url in new if not self.due(url, listing[url], self.listings)]
        new = [url for url in new if url not in waiting]
        logger.info("Listed %s: %d input(s), %d new or changed%s", mask(self.location), len(listing), len(new),
                    f", {len(waiting)} failed unchanged, waiting" if waiting else "")
        # The listing says each one changed: fetched anew, whatever a data file of the same name holds.
        runs = run_inputs(new, number, kwargs={**self.kwargs, "force": True}, fail_fast=self.fail_fast, **run) \
            if new else []
        for url, r in zip(new, runs):
            if r.ok:
                self.failed.pop(url, None)
            else:
                self.note_failure(url, listing[url], self.listings)
        if new or self.since_start:
            done = list(listing) if self.since_start else [url for url, r in zip(new, runs) if r.ok]
            self.seen, self.since_start = remember(self.seen, listing, done), False
            storage.write_bytes(self.state, json.dumps(self.seen).encode(), self.options)
        return runs

    def due(self, url: str, version: Sequence, listing: int) -> bool:
        """Whether *url*, listed with *version*, runs at this watch's *listing*: yes, unless it failed, is
        unchanged and its wait is not over (a bad input is not fetched, run, logged and posted at every listing)."""
        found = self.failed.get(url)
        return found is None or found[0] != list(version) or listing >= found[2]

    def note_failure(self, url: str, version: Sequence, listing: int) -> None:
        """*url* failed at *listing*: unchanged, it waits 2, 4, 8, ... listings (64 at most)."""
        before, failures, _ = self.failed.get(url, ([], 0, 0))
        failures = failures + 1 if before == list(version) else 1
        self.failed[url] = (list(version), failures, listing + 2 ** min(failures, 6))
