"""What a pipeline run returns: success, the output, the frames, and every task's state."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from daskgif.core.state import FAILED, MappedStates, RunRecord, iter_states

__all__ = ["Result", "iter_states"]

# Larger GIFs are linked, not embedded, in a notebook.
INLINE_LIMIT = 8 * 2**20


@dataclass(frozen=True, kw_only=True)
class Result(RunRecord):
    """The outcome of ``build_graph(...).compute()``: a :class:`~daskgif.core.state.RunRecord` and what it wrote.

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
    def reused(self) -> int:
        """Frames kept from an earlier run's ``frames_dir`` instead of being written again."""
        return sum(found.reused for found in self.states.values() if isinstance(found, MappedStates))

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-able data: ``ok``, ``out``, ``frames``, ``states`` and timings."""
        frames = self.frames.to_json() if hasattr(self.frames, "to_json") else list(self.frames)
        return {"ok": self.ok, "out": self.path, "size": self.size, "frames": frames, "reused": self.reused,
                **super().to_dict()}

    def visualize(self, filename: str | None = None, format: str | None = None) -> Any:  # noqa: A002 - dask's name
        """Draw this run: the pipeline's steps coloured by state, with attempts, counts and failed frames.

        Like dask's ``visualize``: with a *filename* the picture is also saved
        (any fsspec path); *format* is ``"svg"``, ``"png"``, ``"pdf"`` or ``"dot"``
        (the Graphviz source), else the file's suffix says, else PNG. Works on
        the result of a failed run too (``RunFailed(...).result``).  See
        :func:`daskgif.views.runpicture.draw_run`.

        Returns
        -------
        graphviz.Digraph
            Shows itself in Jupyter.
        """
        from daskgif.views.pictures import picture_file, save_picture
        from daskgif.views.runpicture import draw_run

        picture = draw_run(self)
        if filename is not None:
            save_picture(picture, picture_file(filename, format), self.storage_options)
        return picture

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
        return (
            f"<div><p><b>daskgif run {status}</b>: {len(self.frames)} frames to "
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
