"""A run's settings: read and checked on the client when the graph is built, frozen, sent to every task."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daskgif import storage
from daskgif.core.runtime import LOCAL_SCHEDULERS  # noqa: F401 - graph.py imports it from here
from daskgif.core.task import Task
from daskgif.pipeline.messages import StateHook
from daskgif.pipeline.result import Result


@dataclass(frozen=True)
class Params:
    """Everything a run's tasks need, read and checked on the client when the graph is built."""

    url: str
    data_file: str
    out: str
    frames_dir: str
    delimiter: bytes
    duration: int
    loop: int
    force: bool
    storage_options: dict | None
    on_error: str
    frames_per_task: int | str
    retries: int
    retry_delay: float
    run: str
    chunk_size: int = 4 * 2**20
    max_pixels: int | None = None
    fetch_timeout: float = 60
    max_bytes: int | None = None
    allowed_protocols: tuple[str, ...] | None = None
    fetch_deadline: float | None = None
    check_remote: bool = True
    validate: str = "decode"
    lock_timeout: float = 10
    retry: dict = field(default_factory=dict)
    task_timeout: dict = field(default_factory=dict)  # seconds per step name (daskgif.task-timeout)
    limits: dict = field(default_factory=dict)  # leases per kind (daskgif.limits)
    resume: bool = True  # keep the frames an earlier run wrote (daskgif.resume)

    def task(self, func: Callable, name: str, *, retried: bool = True, announce: dict | None = None,
             skip_on_upstream_skip: bool = True) -> Task:
        """A Task of this run: its retry policy (when *retried*) and the hook that sends its states."""
        retry = {"retries": self.retries, "retry_delay": self.retry_delay, **self.retry} if retried else {}
        return Task(func, name=name, skip_on_upstream_skip=skip_on_upstream_skip,
                    on_state=(StateHook(self.run, announce),), timeout=self.task_timeout.get(name),
                    timeout_setting=f"daskgif.task-timeout.{name}", record=Result, **retry)



def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _positive_or_none(value: Any) -> bool:
    return value is None or _positive(value)


def _batch_size(value: Any) -> bool:
    return value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0)


def default_frames_dir(out: str) -> str:
    """The frames folder next to *out*: ``frames`` in *out*'s folder.

    >>> default_frames_dir("clip.gif"), default_frames_dir("s3://bucket/gifs/clip.gif")
    ('frames', 's3://bucket/gifs/frames')
    >>> default_frames_dir("file:///clip.gif")
    'file:///frames'
    
    """
    head, sep, _ = out.rpartition("/")
    return head + sep + "frames"


def check_arguments(delimiter: Any, duration: Any, loop: Any, retries: Any, retry_delay: Any, on_error: Any,
                    frames_per_task: Any) -> None:
    """Raise ``ValueError`` or ``TypeError`` naming the first bad argument.

    >>> check_arguments(b"\\n", 100, 0, 2, 10, "raise", "auto")
    >>> check_arguments(b"", 100, 0, 2, 10, "raise", "auto")
    Traceback (most recent call last):
    ...
    ValueError: delimiter must be non-empty bytes, got b''
    """
    if not isinstance(delimiter, bytes) or not delimiter:
        raise ValueError(f"delimiter must be non-empty bytes, got {delimiter!r}")
    for name, value in [("duration", duration), ("loop", loop), ("retries", retries)]:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if duration > 655350:
        raise ValueError(f"duration must be at most 655350 ms (GIF stores hundredths in 16 bits), got {duration}")
    if loop > 65535:
        raise ValueError(f"loop must be at most 65535, got {loop}")
    if not isinstance(retry_delay, (int, float)) or retry_delay < 0:
        raise ValueError(f"retry_delay must be a non-negative number of seconds, got {retry_delay!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if frames_per_task != "auto" and (not isinstance(frames_per_task, int) or frames_per_task < 1):
        raise ValueError(f"frames_per_task must be 'auto' or a positive integer, got {frames_per_task!r}")


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
    if out is not None and frames_dir is not None and os.path.dirname(os.path.abspath(out)) == \
            os.path.abspath(frames_dir) and os.path.basename(out).startswith("frame_"):
        raise ValueError(f"out {p.out!r} is in frames_dir {p.frames_dir!r} under a frame's name")
    if out is not None and os.path.isdir(out):
        raise ValueError(f"out {p.out!r} is an existing folder; give the path of the GIF to write")
    if frames_dir is not None and os.path.exists(frames_dir) and not os.path.isdir(frames_dir):
        raise ValueError(f"frames_dir {p.frames_dir!r} is an existing file, not a folder")

