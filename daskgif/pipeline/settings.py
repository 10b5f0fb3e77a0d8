"""A run's settings: read and checked on the client when the graph is built, frozen, sent to every task
(worker processes do not see the client's ``dask.config.set``).
"""

from __future__ import annotations

import uuid
from functools import partial
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dask.base import tokenize

from daskgif import config, storage
from daskgif.core.task import Task
from daskgif.pipeline import kinds
from daskgif.pipeline import cancel
from daskgif.pipeline.kinds import Kind
from daskgif.pipeline.limits import check_limits, check_timeouts
from daskgif.pipeline.messages import StateHook
from daskgif.pipeline.parameters import DATA, check_arguments
from daskgif.pipeline.result import Result
from daskgif.pipeline.sample import sample_path

__all__ = ["Params", "SETTINGS", "read_setting", "default_frames_dir"]

SECONDS = kinds.POSITIVE_SECONDS
POSITIVE_INTEGER_OR_NULL = kinds.or_none(kinds.POSITIVE_INTEGER, "null")

#: Every setting that is only ``dask.config`` (below ``daskgif.``), and its check: a kind of value, or a function
#: that checks (naming the key) and converts.  Settings that give a parameter its default are in its table.
SETTINGS: dict[str, Kind | Callable[[Any], Any]] = {
    "chunk-size": kinds.POSITIVE_INTEGER,
    "max-pixels": POSITIVE_INTEGER_OR_NULL,
    "fetch-timeout": SECONDS,
    "fetch-deadline": kinds.or_none(SECONDS, "null"),
    "fetch-check-remote": kinds.FLAG,
    "max-bytes": POSITIVE_INTEGER_OR_NULL,
    "allowed-protocols": kinds.PROTOCOLS,
    "validate": kinds.choice("decode", "structure"),
    "lock-timeout": SECONDS,
    "retry-backoff": kinds.POSITIVE,
    "retry-max-delay": SECONDS,
    "retry-jitter": kinds.FRACTION,
    "task-timeout": check_timeouts,  # seconds per step name
    "limits": check_limits,  # leases per kind
    "resume": kinds.FLAG,  # keep the frames an earlier run wrote
    "connect-timeout": SECONDS,
    "stop-timeout": kinds.SECONDS,
    "notify-timeout": SECONDS,
    "notify-retries": kinds.INTEGER,
    "notify-retry-delay": kinds.SECONDS,
    "progress-interval": kinds.SECONDS,
    "dashboard.max-runs": kinds.POSITIVE_INTEGER,
    "dashboard.max-frame-records": kinds.POSITIVE_INTEGER,
    "schedule.recycle-every": POSITIVE_INTEGER_OR_NULL,
}


def read_setting(key: str) -> Any:
    """The setting *key* of :data:`SETTINGS` from ``dask.config``, checked; keys of a mapping read with ``-`` for ``_``.

    >>> import dask
    >>> with dask.config.set({"daskgif.notify-retries": -1}):
    ...     read_setting("notify-retries")
    Traceback (most recent call last):
    ...
    ValueError: daskgif.notify-retries must be a non-negative integer, got -1
    """
    value, check = kinds.normalise_keys(config.get(key)), SETTINGS[key]
    if isinstance(check, Kind):
        return config.check(key, value, check.accepts, check.expected)
    return check(value)


@dataclass(frozen=True)
class Params:
    """Everything a run's tasks need: ``p.out``, ``p.duration``, ... are ``build_graph``'s data arguments
    (``url`` and ``frames_dir`` resolved), ``p.chunk_size``, ... the settings of :data:`SETTINGS`, ``p.run``
    the run's token, ``p.batch`` the id of its batch of inputs (:func:`daskgif.build_graphs`), if any.
    """

    run: str
    arguments: Mapping[str, Any]
    settings: Mapping[str, Any]
    batch: str | None = None

    @classmethod
    def from_arguments(cls, batch: str | None = None, **arguments: Any) -> Params:
        """The settings of one run: ``build_graph``'s *arguments* checked (``url=None``: the sample,
        ``frames_dir=None``: ``frames`` next to *out*; ``on_state`` not kept), ``dask.config`` read.

        >>> p = Params.from_arguments(out="s3://bucket/clip.gif", duration=40)
        >>> p.frames_dir, p.duration, p.on_error, p.chunk_size > 0
        ('s3://bucket/frames', 40, 'raise', True)
        """
        given = check_arguments(arguments)
        data = {name: given[name] for name in DATA}
        data["url"] = data["url"] or sample_path()
        data["frames_dir"] = data["frames_dir"] or default_frames_dir(data["out"])
        # Writes get unique keys: two builds with equal arguments are two runs.
        token = tokenize(data["url"], data["data_file"], data["out"], data["frames_dir"], uuid.uuid4().hex)
        # Every setting is checked here, also one that only a schedule, a webhook or the runs page reads later.
        return cls(run=token, arguments=data, settings={key: read_setting(key) for key in SETTINGS},
                   batch=batch)

    def __getattr__(self, name: str) -> Any:
        # An argument or a setting.  Dunder names (pickle's __setstate__) are never values.
        arguments, settings = self.__dict__.get("arguments", {}), self.__dict__.get("settings", {})
        key = name.replace("_", "-")
        if not name.startswith("__") and (name in arguments or key in settings):
            return arguments[name] if name in arguments else settings[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def lease(self) -> storage.Lease:
        """This run's :class:`~daskgif.storage.Lease` on its data file, frames folder and output: never shared."""
        guarded = (self.data_file, self.frames_dir.rstrip("/"), self.out)
        return storage.Lease(guarded, self.storage_options, owner=self.run, seconds=self.lock_timeout)

    def task(self, func: Callable, name: str, *, retried: bool = True, announce: dict | None = None,
             skip_on_upstream_skip: bool = True, hooks: tuple = ()) -> Task:
        """A Task of this run: its retry policy (when *retried*), the hook that sends its states, and *hooks*."""
        retry = {"retries": self.retries, "retry_delay": self.retry_delay, "backoff": self.retry_backoff,
                 "max_delay": self.retry_max_delay, "jitter": self.retry_jitter} if retried else {}
        return Task(func, name=name, skip_on_upstream_skip=skip_on_upstream_skip,
                    retry_if=partial(cancel.retried, self.run), on_state=(StateHook(self.run, announce), *hooks),
                    timeout=self.task_timeout.get(name), timeout_setting=f"daskgif.task-timeout.{name}", record=Result, **retry)


def default_frames_dir(out: str) -> str:
    """The frames folder next to *out*: ``frames`` in *out*'s folder.

    >>> default_frames_dir("clip.gif"), default_frames_dir("s3://b/gifs/clip.gif"), default_frames_dir("file:///c.gif")
    ('frames', 's3://b/gifs/frames', 'file:///frames')
    """
    head, sep, _ = out.rpartition("/")
    return head + sep + "frames"
