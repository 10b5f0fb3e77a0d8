"""Many inputs as runs of the schedule loop: a batch of inputs in one computation, and a watched location.

:func:`run_inputs` runs one pipeline per input (:func:`daskgif.build_graphs`) as one batch
(:func:`daskgif.ops.batch.run_batch`) and returns one :class:`~daskgif.ops.schedule.ScheduledRun` per
input, each with the batch's id, for :func:`~daskgif.ops.schedule.run_schedule` to report (history,
webhook) as a ``job``.

:class:`Watch` is the job of ``daskgif run --watch LOCATION``: each turn lists the location once, with
details (:func:`daskgif.storage.list_inputs`: size and ETag or modification time, no request per file),
and runs the inputs that are new or changed since the listing its state file remembers (fetched anew,
``force``).  The state file
keeps only inputs whose run succeeded, so a failed input is tried again at the next listing, and a
restart does not redo the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from daskgif import storage
from daskgif.ops.batch import run_batch
from daskgif.ops.schedule import ScheduledRun
from daskgif.pipeline.graph import build_graphs, new_batch
from daskgif.redact import mask, safe_parameters

__all__ = ["run_inputs", "Watch", "state_path", "changed", "remember"]

logger = logging.getLogger(__name__)

#: A listing: each input's URL and what tells its versions apart, ``(size, version)``.
Listing = Mapping[str, Sequence]


def run_inputs(urls: str | Sequence[str], number: int = 1, *, kwargs: Mapping[str, Any] | None = None,
               graphs: Sequence[Any] | None = None, fail_fast: bool = False, scheduled: float | None = None,
               **run: Any) -> list[ScheduledRun]:
    """Run one pipeline per input as one batch: one :class:`ScheduledRun` per input, each with the batch's id.

    Parameters
    ----------
    urls : str or sequence of str
        The inputs, as :func:`daskgif.build_graphs` takes them, with its other arguments *kwargs*.
    number : int
        The run's number in its schedule.
    graphs : sequence of Pipeline, optional
        The batch, when already built from *urls*.
    **run
        ``client``, ``scheduler``, ``stop``: as ``daskgif.ops.batch.run_batch`` takes them.

    A batch that cannot be built (two inputs would write one path, a pattern matches nothing)
    is a failed run per input, not an exception: a watch goes on.
    """
    began = time.time()
    batch = graphs[0].params.batch if graphs else new_batch()
    try:
        graphs = graphs or build_graphs(urls, batch=batch, **(kwargs or {}))
    except (OSError, ValueError, TypeError) as e:
        return [ScheduledRun(number, scheduled or began, began, time.time(), False, message=mask(str(e)),
                             parameters=safe_parameters({**(kwargs or {}), "url": url}), batch=batch)
                for url in ([urls] if isinstance(urls, str) else urls)]
    return [ScheduledRun(number, scheduled or began, r.started or began, (r.started or began) + r.duration, r.ok,
                         r.result, r.message, r.cancelled, safe_parameters(g.params.arguments), batch)
            for r, g in zip(run_batch(graphs, fail_fast=fail_fast, **run), graphs)]


def state_path(location: str, history: str | None = None) -> str:
    """Where a watch of *location* keeps what it has seen: next to the *history* file, else in the current folder.

    One file per location, so watches of several locations may share a history.

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

    An input whose run failed keeps what was seen before (it differs: it is tried again);
    one no longer listed is forgotten.

    >>> remember({"a": [3, "e1"], "gone": [1, "x"]}, {"a": (3, "e1"), "b": (4, "e2"), "c": (5, "e3")}, ["b"])
    {'a': [3, 'e1'], 'b': [4, 'e2']}
    """
    return {url: list(listing[url] if url in done else seen[url]) for url in listing if url in done or url in seen}


class Watch:
    """The job of ``daskgif run --watch``: each call lists *location* once and runs what is new or changed.

    Parameters
    ----------
    location : str
        A folder or prefix (every file under it) or a pattern, on any fsspec file system.
    kwargs : dict
        :func:`daskgif.build_graphs`'s other arguments (``storage_options`` also for the listing and *state*).
    state : str
        The state file (:func:`state_path`), written atomically after each batch.
    since_start : bool
        Take what the first listing finds as seen: only inputs that appear or change later are run.
    fail_fast : bool
        Stop each batch at its first failure.

    Examples
    --------
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
        self.options = kwargs.get("storage_options")
        self.since_start = since_start
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
        new = [] if self.since_start else changed(listing, self.seen)
        logger.info("Listed %s: %d input(s), %d new or changed", mask(self.location), len(listing), len(new))
        # The listing says each one changed: fetched anew, whatever a data file of the same name holds.
        runs = run_inputs(new, number, kwargs={**self.kwargs, "force": True}, fail_fast=self.fail_fast, **run) \
            if new else []
        if new or self.since_start:
            done = list(listing) if self.since_start else [url for url, r in zip(new, runs) if r.ok]
            self.seen, self.since_start = remember(self.seen, listing, done), False
            storage.write_bytes(self.state, json.dumps(self.seen).encode(), self.options)
        return runs
