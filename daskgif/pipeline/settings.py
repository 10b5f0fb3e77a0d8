"""A run's settings: read and checked on the client when the graph is built, frozen, sent to every task.

:class:`Params` holds ``build_graph``'s arguments (the table of
:mod:`daskgif.pipeline.parameters`, checked) and the settings that are only
``dask.config`` (:data:`SETTINGS`, read and checked by :func:`read_settings`,
the one place that reads them).  Tasks read neither the table nor the
configuration: worker processes do not see the client's ``dask.config.set``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dask.base import tokenize

from daskgif import config, storage
from daskgif.core.runtime import LOCAL_SCHEDULERS
from daskgif.core.task import Task
from daskgif.pipeline import kinds, limits
from daskgif.pipeline.kinds import Kind
from daskgif.pipeline.limits import check_timeouts
from daskgif.pipeline.messages import StateHook
from daskgif.pipeline.parameters import DATA, check_arguments
from daskgif.pipeline.result import Result
from daskgif.pipeline.sample import sample_path

__all__ = ["Params", "Setting", "SETTINGS", "read_settings", "read_setting", "check_paths", "default_frames_dir",
           "LOCAL_SCHEDULERS"]


@dataclass(frozen=True)
class Setting:
    """A setting that is only ``dask.config``: its key below ``daskgif.``, the :class:`Params` field it fills
    (``None`` for a setting read where it is used, see :func:`read_setting`), and its check: a
    :class:`~daskgif.pipeline.kinds.Kind` (then *convert*), or a function that checks and converts, naming
    the key."""

    key: str
    field: str | None
    kind: Kind | Callable[[Any], Any]
    convert: Callable[[Any], Any] | None = None

    def read(self) -> Any:
        """The setting's value from ``dask.config``, checked; keys of a mapping value read with ``-`` for ``_``."""
        value = kinds.normalise_keys(config.get(self.key))
        if not isinstance(self.kind, Kind):
            return self.kind(value)
        value = config.check(self.key, value, self.kind.accepts, self.kind.expected)
        return value if self.convert is None else self.convert(value)


SECONDS = kinds.POSITIVE_SECONDS
SECONDS_OR_NULL = kinds.or_none(SECONDS, "null")
POSITIVE_INTEGER_OR_NULL = kinds.or_none(kinds.POSITIVE_INTEGER, "null")

#: Every setting that is only ``dask.config``, with its check: those with a field are read when a graph is
#: built and travel in :class:`Params`; the others are read where they are used, by :func:`read_setting`.
#: (The settings that give a parameter its default, ``on-error``, are in the parameter table.)
SETTINGS: tuple[Setting, ...] = (
    Setting("chunk-size", "chunk_size", kinds.POSITIVE_INTEGER),
    Setting("max-pixels", "max_pixels", POSITIVE_INTEGER_OR_NULL),
    Setting("fetch-timeout", "fetch_timeout", SECONDS),
    Setting("fetch-deadline", "fetch_deadline", SECONDS_OR_NULL),
    Setting("fetch-check-remote", "check_remote", kinds.FLAG),
    Setting("max-bytes", "max_bytes", POSITIVE_INTEGER_OR_NULL),
    Setting("allowed-protocols", "allowed_protocols", kinds.PROTOCOLS, tuple),
    Setting("validate", "validate", kinds.choice("decode", "structure")),
    Setting("lock-timeout", "lock_timeout", SECONDS),
    Setting("retry-backoff", "retry_backoff", kinds.POSITIVE),
    Setting("retry-max-delay", "retry_max_delay", SECONDS),
    Setting("retry-jitter", "retry_jitter", kinds.FRACTION),
    Setting("task-timeout", "task_timeout", check_timeouts),  # seconds per step name
    Setting("limits", "limits", limits.check_limits),  # leases per kind
    Setting("resume", "resume", kinds.FLAG),  # keep the frames an earlier run wrote
    # Read where they are used: reaching a cluster, stopping a schedule, webhooks, the runs page.
    Setting("connect-timeout", None, SECONDS),
    Setting("stop-timeout", None, kinds.SECONDS),
    Setting("notify-timeout", None, SECONDS),
    Setting("notify-retries", None, kinds.INTEGER),
    Setting("notify-retry-delay", None, kinds.SECONDS),
    Setting("progress-interval", None, kinds.SECONDS),
    Setting("dashboard.max-runs", None, kinds.POSITIVE_INTEGER),
    Setting("dashboard.max-frame-records", None, kinds.POSITIVE_INTEGER),
)
BY_KEY: dict[str, Setting] = {setting.key: setting for setting in SETTINGS}


def read_settings() -> dict[str, Any]:
    """Check every setting of :data:`SETTINGS`, and return those a run's tasks need, by field name.

    A bad setting fails when a graph is built, before anything runs, also one that
    only a schedule, a webhook or the runs page reads later.

    Raises
    ------
    ValueError
        Naming the first bad key, what it must be and what it got, and the
        environment variable when the value came from one.

    Examples
    --------
    >>> import dask
    >>> read_settings()["lock_timeout"]
    10
    >>> with dask.config.set({"daskgif.task_timeout": {"write_frame": 5}}):
    ...     read_settings()["task_timeout"]["write-frame"]
    5
    >>> with dask.config.set({"daskgif.lock-timeout": -1}):
    ...     read_settings()
    Traceback (most recent call last):
    ...
    ValueError: daskgif.lock-timeout must be a positive number of seconds, got -1
    """
    read = [(setting.field, setting.read()) for setting in SETTINGS]
    return {field: value for field, value in read if field is not None}


def read_setting(key: str) -> Any:
    """The setting *key* of :data:`SETTINGS` from ``dask.config``, checked: for what is read outside a graph.

    >>> import dask
    >>> read_setting("notify-retries")
    2
    >>> with dask.config.set({"daskgif.notify-retries": -1}):
    ...     read_setting("notify-retries")
    Traceback (most recent call last):
    ...
    ValueError: daskgif.notify-retries must be a non-negative integer, got -1
    """
    return BY_KEY[key].read()


@dataclass(frozen=True)
class Params:
    """Everything a run's tasks need, read and checked on the client when the graph is built.

    ``p.out``, ``p.duration``, ... are ``build_graph``'s arguments (by the names
    of :data:`~daskgif.pipeline.parameters.PARAMETERS`; ``url`` and
    ``frames_dir`` resolved); ``p.chunk_size``, ``p.lock_timeout``, ... the
    settings of :data:`SETTINGS`; ``p.run`` the run's token; ``p.batch`` the id of the
    batch of inputs it belongs to (:func:`daskgif.build_graphs`), if any.  Build one with
    :meth:`from_arguments`.
    """

    run: str
    arguments: Mapping[str, Any]
    settings: Mapping[str, Any]
    batch: str | None = None

    @classmethod
    def from_arguments(cls, batch: str | None = None, **arguments: Any) -> Params:
        """The settings of one run: ``build_graph``'s *arguments* checked, ``dask.config`` read and checked.

        ``url=None`` becomes the embedded sample, ``frames_dir=None`` the
        ``frames`` folder next to *out*; arguments that are code
        (``on_state``) are checked but not kept.

        >>> p = Params.from_arguments(out="s3://bucket/clip.gif", duration=40)
        >>> p.frames_dir, p.duration, p.on_error, p.chunk_size > 0
        ('s3://bucket/frames', 40, 'raise', True)
        """
        given = check_arguments(arguments)
        data = {name: given[name] for name in DATA}
        data["url"] = sample_path() if data["url"] is None else data["url"]
        data["frames_dir"] = default_frames_dir(data["out"]) if data["frames_dir"] is None else data["frames_dir"]
        # Writes get unique keys: two builds with equal arguments are two runs.
        token = tokenize(data["url"], data["data_file"], data["out"], data["frames_dir"], uuid.uuid4().hex)
        return cls(run=token, arguments=data, settings=read_settings(), batch=batch)

    def __getattr__(self, name: str) -> Any:
        # p.out, p.chunk_size: an argument or a setting.  Dunder names (pickle's __setstate__) are never values.
        if not name.startswith("__"):
            for part in ("arguments", "settings"):
                values = self.__dict__.get(part, {})
                if name in values:
                    return values[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def lease(self) -> storage.Lease:
        """This run's lease on what it reads and writes: its data file, its frames folder and its output.

        ``<data_file>.lock``, ``<frames_dir>.lock`` and ``<out>.lock`` (see
        :class:`~daskgif.storage.Lease`): two runs never share one of them.
        """
        guarded = (self.data_file, self.frames_dir.rstrip("/"), self.out)
        return storage.Lease(guarded, self.storage_options, owner=self.run, seconds=self.lock_timeout)

    def task(self, func: Callable, name: str, *, retried: bool = True, announce: dict | None = None,
             skip_on_upstream_skip: bool = True, hooks: tuple = ()) -> Task:
        """A Task of this run: its retry policy (when *retried*), the hook that sends its states, and *hooks*."""
        retry = {"retries": self.retries, "retry_delay": self.retry_delay, "backoff": self.retry_backoff,
                 "max_delay": self.retry_max_delay, "jitter": self.retry_jitter} if retried else {}
        return Task(func, name=name, skip_on_upstream_skip=skip_on_upstream_skip,
                    on_state=(StateHook(self.run, announce), *hooks), timeout=self.task_timeout.get(name),
                    timeout_setting=f"daskgif.task-timeout.{name}", record=Result, **retry)


def default_frames_dir(out: str) -> str:
    """The frames folder next to *out*: ``frames`` in *out*'s folder.

    >>> default_frames_dir("clip.gif"), default_frames_dir("s3://bucket/gifs/clip.gif")
    ('frames', 's3://bucket/gifs/frames')
    >>> default_frames_dir("file:///clip.gif")
    'file:///frames'
    """
    head, sep, _ = out.rpartition("/")
    return head + sep + "frames"


def in_frames_dir(path: str, frames_dir: str) -> bool:
    """Whether a run writing frames to *frames_dir* may write, replace or remove *path*.

    >>> in_frames_dir("frames/frame_99.gif", "frames"), in_frames_dir("frames/notes.txt", "frames/")
    (True, False)
    >>> in_frames_dir("s3://b/f/.frames-manifest.json", "s3://b/f"), in_frames_dir("frame_01.gif", "frames")
    (True, False)
    """
    def folder(path: str) -> str:
        local = storage.local_path(path)
        return os.path.abspath(local) if local is not None else path.rstrip("/")

    head, _, name = path.rstrip("/").rpartition("/")
    written = name.startswith(("frame_", ".frame")) or name.endswith(".lock")
    return written and folder(head or ".") == folder(frames_dir)


def check_paths(p: Params) -> None:
    """Refuse outputs that clash, before any work: a usage error names both paths.

    The output may not be the data file or a frame file; an existing folder
    cannot become the output, nor an existing file the frames folder.
    """
    out, data_file = storage.local_path(p.out), storage.local_path(p.data_file)
    frames_dir = storage.local_path(p.frames_dir)
    if p.out == p.data_file or (out is not None and data_file is not None
                                and os.path.abspath(out) == os.path.abspath(data_file)):
        raise ValueError(f"out and data_file are the same file ({p.out!r}): the clip would overwrite its input")
    for name in ("out", "data_file"):
        if in_frames_dir(getattr(p, name), p.frames_dir):
            raise ValueError(f"{name} {getattr(p, name)!r} is in frames_dir {p.frames_dir!r} under a name the run "
                             "writes or clears there (frame_*, the manifest, the lock): give it another name or folder")
    if out is not None and os.path.isdir(out):
        raise ValueError(f"out {p.out!r} is an existing folder; give the path of the GIF to write")
    if frames_dir is not None and os.path.exists(frames_dir) and not os.path.isdir(frames_dir):
        raise ValueError(f"frames_dir {p.frames_dir!r} is an existing file, not a folder")
