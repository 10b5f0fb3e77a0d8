"""What a pipeline run returns: success, the output, the frames, and every task's state."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from daskgif.core.state import FAILED, SKIPPED, SUCCESS, MappedStates, RunReport, State, iter_states
from daskgif.redact import mask

__all__ = ["Result"]

# Larger GIFs are linked, not embedded, in a notebook.
INLINE_LIMIT = 8 * 2**20
#: How each output format is shown inline, by suffix (see :data:`daskgif.pipeline.steps.WRITERS`).
MEDIA_TYPES = {".gif": "image/gif", ".webp": "image/webp", ".png": "image/png", ".mp4": "video/mp4"}


@dataclass(frozen=True, kw_only=True)
class Result(RunReport):
    """The outcome of ``build_graph(...).compute()`` (and the ``result`` of a failed run's ``RunFailed``): a
    :class:`~daskgif.core.state.RunReport` and the output's *path* (``None`` if not written) and *size*, and
    its *frames*, the frame files in order (a compact :class:`~daskgif.pipeline.frames.FramePaths`).
    """

    path: str | None = None
    frames: Sequence[str] = ()
    size: int | None = None
    storage_options: dict | None = field(default=None, repr=False, compare=False)

    @property
    def _mapped(self) -> MappedStates:
        """The states of the per-frame task (the one mapped task of a run); empty before frames were mapped."""
        return next((found for found in self.states.values() if isinstance(found, MappedStates)), MappedStates(""))

    @property
    def frames_in(self) -> int | None:
        """Frames the input held, every one counted by its ``write-frame``; ``None`` before they were mapped."""
        return sum(self._mapped.counts.values()) or None

    @property
    def frames_written(self) -> int:
        """Frames written to ``frames_dir`` (or kept there from an earlier run): the clip's, when the run succeeded."""
        return self._mapped.counts.get(SUCCESS, 0)

    @property
    def reused(self) -> int:
        """Frames kept from an earlier run's ``frames_dir`` instead of being written again."""
        return self._mapped.reused

    def skipped_frames(self) -> list[State]:
        """Return the state of every skipped frame, by index: each message says why it was dropped."""
        return [state for state in self._mapped.values() if state.state == SKIPPED]

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-able data: ``ok``, ``out``, ``frames`` and their counts, ``states``, times."""
        frames = self.frames.to_json() if hasattr(self.frames, "to_json") else list(self.frames)
        return {"ok": self.ok, "out": self.path, "size": self.size, "frames": frames, "frames_in": self.frames_in,
                "frames_written": self.frames_written, "reused": self.reused, **super().to_dict()}

    def __repr__(self) -> str:
        path = None if self.path is None else mask(self.path)
        return f"Result(ok={self.ok}, path={path!r}, frames={len(self.frames)}, duration={self.duration:.2f}s)"

    def _repr_html_(self) -> str:
        escape = html.escape
        rows = "".join(f"<tr><td>{escape(name)}</td><td>{escape(', '.join(f'{k}: {n}' for k, n in per.items()))}"
                       "</td></tr>" for name, per in self.counts().items())
        failed = "".join(f"<li>{escape(s.name)}{'' if s.index is None else f' [{s.index}]'}: {escape(s.message)}</li>"
                         for s in iter_states(self.states) if s.state == FAILED)
        of = "" if self.frames_in in (None, len(self.frames)) else f" of {self.frames_in}"
        failed = f"<ul>{failed}</ul>" if failed else ""
        return (f"<div><p><b>daskgif run {'succeeded' if self.ok else 'FAILED'}</b>: {len(self.frames)}{of} frames to "
                f"<code>{escape(mask(str(self.path)))}</code> in {self.duration:.2f} s</p>{self.gif_html()}"
                f"<table><tr><th>task</th><th>states</th></tr>{rows}</table>{failed}</div>")

    def gif_html(self) -> str:
        """Return the output inline, as its format shows in a browser (``<img>``; ``<video>`` for MP4), or a note
        when it cannot be shown."""
        from daskgif import storage

        if self.path is None:
            return ""
        shown = html.escape(mask(self.path))
        try:
            with storage.open_input(self.path, self.storage_options) as f:
                data = f.read(INLINE_LIMIT + 1)
        except OSError as e:
            return f"<p>(cannot show {shown}: {html.escape(mask(str(e)))})</p>"
        if len(data) > INLINE_LIMIT:
            return f"<p>({shown} is too large to show inline)</p>"
        kind = MEDIA_TYPES.get("." + self.path.rpartition(".")[2].lower(), "image/gif")
        source = f"data:{kind};base64,{base64.b64encode(data).decode()}"
        if kind.startswith("video/"):
            return f'<video src="{source}" autoplay loop muted controls></video>'
        return f'<img src="{source}"/>'
