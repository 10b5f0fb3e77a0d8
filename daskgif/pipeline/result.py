"""What a pipeline run returns: success, the output, the frames, and every task's state."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from daskgif.core.state import (
    FAILED,
    SKIPPED,
    SUCCESS,
    MappedStates,
    RunReport,
    State,
    iter_states,
)

__all__ = ["Result", "iter_states"]

# Larger GIFs are linked, not embedded, in a notebook.
INLINE_LIMIT = 8 * 2**20


@dataclass(frozen=True, kw_only=True)
class Result(RunReport):
    """The outcome of ``build_graph(...).compute()``: a :class:`~daskgif.core.state.RunReport` and what it wrote.

    Also the ``result`` of the :class:`~daskgif.errors.RunFailed` of a failed run.

    Attributes
    ----------
    ok : bool
        True when every task succeeded or was skipped.
    path : str or None
        The animated GIF (``None`` in the result of a run that failed before writing it).
    frames : sequence of str
        The frame files that went into it, in order (a tuple, or a
        ``daskgif.pipeline.frames.FramePaths`` that computes them, at any frame count).
    states : dict
        ``{"fetch": State, "split": State, "map-frames": State,
        "write-frame": MappedStates, "combine": State}``: a mapped task keeps
        counts per state and the :class:`~daskgif.core.state.State` of each frame
        that was not a plain success (see :class:`~daskgif.core.state.MappedStates`).
    size : int or None
        Bytes written to *path*.
    started, finished : float
        Wall-clock times (``time.time()``) of the run's first task and its end.
    """

    path: str | None = None
    frames: Sequence[str] = ()
    size: int | None = None
    storage_options: dict | None = field(default=None, repr=False, compare=False)

    @property
    def duration(self) -> float:
        """Seconds from the first task's start to the end of the run."""
        return self.finished - self.started

    @property
    def frames_in(self) -> int | None:
        """Frames the input held: the spans the split found, every one counted by its ``write-frame``.

        ``None`` when no frame was counted (a run that failed before its frames were mapped).
        """
        mapped = self._mapped()
        return None if mapped is None else sum(mapped.counts.values())

    @property
    def frames_written(self) -> int:
        """Frames written to ``frames_dir`` (or kept there from an earlier run): the clip's, when the run succeeded."""
        mapped = self._mapped()
        return 0 if mapped is None else mapped.counts.get(SUCCESS, 0)

    def skipped_frames(self) -> list[State]:
        """Return the state of every skipped frame, by index: each message says why it was dropped."""
        mapped = self._mapped()
        return [] if mapped is None else [mapped[i] for i in mapped if mapped[i].state == SKIPPED]

    def _mapped(self) -> MappedStates | None:
        """The states of the per-frame task (the one mapped task of a run)."""
        return next((found for found in self.states.values() if isinstance(found, MappedStates)), None)

    @property
    def reused(self) -> int:
        """Frames kept from an earlier run's ``frames_dir`` instead of being written again."""
        return sum(found.reused for found in self.states.values() if isinstance(found, MappedStates))

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-able data: ``ok``, ``out``, ``frames`` (with ``frames_in`` and
        ``frames_written``, their counts), ``states``, start, end and duration."""
        frames = self.frames.to_json() if hasattr(self.frames, "to_json") else list(self.frames)
        return {"ok": self.ok, "out": self.path, "size": self.size, "frames": frames, "frames_in": self.frames_in,
                "frames_written": self.frames_written, "reused": self.reused, **super().to_dict()}

    def __repr__(self) -> str:
        return (f"Result(ok={self.ok}, path={self.path!r}, frames={len(self.frames)}, "
                f"duration={self.duration:.2f}s)")

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(', '.join(f'{k}: {n}' for k, n in per.items()))}</td></tr>"
            for name, per in self.counts().items()
        )
        failed = "".join(
            f"<li>{html.escape(s.name)}{'' if s.index is None else f' [{s.index}]'}: {html.escape(s.message)}</li>"
            for s in iter_states(self.states) if s.state == FAILED
        )
        status = "succeeded" if self.ok else "FAILED"
        of = "" if self.frames_in in (None, len(self.frames)) else f" of {self.frames_in}"
        return (
            f"<div><p><b>daskgif run {status}</b>: {len(self.frames)}{of} frames to "
            f"<code>{html.escape(str(self.path))}</code> in {self.duration:.2f} s</p>"
            f"{self.gif_html()}"
            f"<table><tr><th>task</th><th>states</th></tr>{rows}</table>"
            f"{f'<ul>{failed}</ul>' if failed else ''}</div>"
        )

    def gif_html(self) -> str:
        """Return an ``<img>`` tag with the GIF inline, or a note when it cannot be shown."""
        from daskgif import storage
        from daskgif.redact import mask

        if self.path is None:
            return ""
        try:
            with storage.open_input(self.path, self.storage_options) as f:
                data = f.read(INLINE_LIMIT + 1)
        except OSError as e:
            return f"<p>(cannot show {html.escape(mask(self.path))}: {html.escape(mask(str(e)))})</p>"
        if len(data) > INLINE_LIMIT:
            return f"<p>({html.escape(self.path)} is too large to show inline)</p>"
        return f'<img src="data:image/gif;base64,{base64.b64encode(data).decode()}"/>'
