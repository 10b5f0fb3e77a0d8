"""A picture of the pipeline: fetch -> split -> write-frame (one per frame) -> combine.

``build_graph(...).visualize()`` draws the Dask graph as it is submitted: five
nodes, because the per-frame tasks are launched at run time by ``map-frames``.
:func:`draw_pipeline` draws the pipeline as it runs instead, with the fan-out of
``write-frame`` tasks and the files between the steps. When the image-data file
is on local disk the real frame count is used; otherwise the map is drawn with
one symbolic ``write-frame [i]`` node.

Drawing needs the ``graphviz`` Python package (a dependency of daskgif); saving a
rendered format (SVG, PNG, PDF) also needs Graphviz's ``dot`` program (Debian and
Ubuntu: ``apt-get install graphviz``; elsewhere https://graphviz.org/download/).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from daskgif.errors import DaskgifError

if TYPE_CHECKING:
    import graphviz

__all__ = ["draw_pipeline", "draw_run", "load_run", "save_picture", "count_frames", "FORMATS"]

#: What to install for pictures, in one line (``daskgif graph`` prints it).
INSTALL = ("pip install graphviz (the Python package), and Graphviz's dot program for .svg/.png/.pdf "
           "(Debian/Ubuntu: apt-get install graphviz)")

#: Picture formats :func:`save_picture` writes, by file suffix.
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

TASK = {"shape": "box", "style": "rounded,filled", "fillcolor": "#dbe8f6", "color": "#3b6fa8",
        "fontname": "Helvetica"}
FILE = {"shape": "note", "style": "filled", "fillcolor": "#f5f5f0", "color": "#888888",
        "fontname": "Helvetica", "fontsize": "11"}


def local_path(path: str) -> str | None:
    """Return *path* as a local file name, or ``None`` when it is not on local disk.

    >>> local_path("file:///tmp/x.img")
    '/tmp/x.img'
    >>> local_path("data/x.img")
    'data/x.img'
    >>> local_path("s3://bucket/x.img") is None
    True
    """
    for prefix in ("file://", "local://"):
        if path.startswith(prefix):
            return path[len(prefix):]
    return None if "://" in path or "::" in path else path


def count_frames(path: str, delimiter: bytes = b"\n\n\n\n") -> int | None:
    """Return how many frames the local image-data file *path* holds.

    Returns ``None`` when *path* is not a readable local file or cannot be
    split; a picture then shows the map symbolically.
    """
    from daskgif import config
    from daskgif.split import split_frames

    name = local_path(path)
    if name is None or not os.path.isfile(name):
        return None
    try:
        with open(name, "rb") as f:
            return sum(1 for _ in split_frames(f, delimiter, chunk_size=config.get("chunk-size"),
                                               max_pixels=config.get("max-pixels")))
    except (OSError, DaskgifError):
        return None


def import_graphviz():
    """Return the ``graphviz`` module, or raise an ``ImportError`` that says what to install."""
    try:
        import graphviz
    except ImportError as e:
        raise ImportError(f"drawing the pipeline needs the graphviz Python package: {INSTALL}") from e
    return graphviz


def frame_indices(count: int, max_frames: int) -> list[int | None]:
    """Return the map indices to draw, ``None`` standing for the frames left out.

    The first ``max_frames - 1`` frames and the last one are drawn.

    >>> frame_indices(2, 3)
    [0, 1]
    >>> frame_indices(27, 3)
    [0, 1, None, 26]
    """
    if count <= max_frames:
        return list(range(count))
    return [*range(max_frames - 1), None, count - 1]


def pipeline_steps() -> tuple[Any, ...]:
    """Return :data:`daskgif.graph.STEPS`, the one description of the pipeline both pictures follow."""
    from daskgif.graph import STEPS

    return STEPS


def mapped_task(step: Any) -> str | None:
    """Return the name of the tasks *step* launches at run time (``write-frame``), or ``None``."""
    return step.maps


def new_picture(graphviz: Any, **graph_attr: str) -> graphviz.Digraph:
    """An empty picture in the house style: top to bottom, Helvetica, grey edges."""
    dot = graphviz.Digraph("daskgif", graph_attr={"rankdir": "TB", "nodesep": "0.3", "ranksep": "0.35",
                                                   "fontname": "Helvetica", "ordering": "out", **graph_attr})
    dot.attr("edge", color="#555555", arrowsize="0.7")
    return dot


def connect(dot: graphviz.Digraph, tails: list[str], heads: list[str], **attrs: str) -> None:
    """Draw edges from every tail to every head; pairwise when both are the same many (frame to frame)."""
    pairs = zip(tails, heads) if len(tails) == len(heads) > 1 else [(t, h) for t in tails for h in heads]
    for tail, head in pairs:
        dot.edge(tail, head, **attrs)


def wire(dot: graphviz.Digraph, start: str | None, draw_step: Callable[[Any], str],
         draw_map: Callable[[Any, str], tuple[list[str], list[str]]],
         draw_file: Callable[[str], str | None], edge: Callable[[Any], dict[str, str]]) -> None:
    """Draw the pipeline's steps in order, each after what the one before it wrote.

    Parameters
    ----------
    start : str, optional
        The node the first step reads (the URL), if drawn.
    draw_step : callable
        Draws a plain step; returns its node.
    draw_map : callable
        Draws a mapping step and its run-time tasks (``step, "write-frame"``);
        returns the nodes its input goes to and those its output comes from.
    draw_file : callable
        Draws the file a step writes, named by a ``build_graph`` parameter
        (``"data_file"``); returns its node, or ``None`` to draw none.
    edge : callable
        The attributes of the edges into a step.
    """
    tails = [start] if start else []
    for step in pipeline_steps():
        child = mapped_task(step)
        heads, ends = ([draw_step(step)],) * 2 if child is None else draw_map(step, child)
        connect(dot, tails, heads, **edge(step))
        tails = ends
        written = draw_file(step.writes) if child is None and step.writes else None
        if written is not None:
            connect(dot, tails, [written], **edge(step))
            tails = [written]


def draw_pipeline(
    url: str | None = None,
    data_file: str = "image-data.img",
    out: str = "clip.gif",
    frames_dir: str | None = None,
    delimiter: bytes = b"\n\n\n\n",
    duration: int = 100,
    loop: int = 0,
    retries: int = 2,
    retry_delay: float = 10,
    force: bool = False,
    storage_options: dict | None = None,
    *,
    on_error: str | None = None,
    max_frames: int = 3,
    **ignored: Any,
) -> graphviz.Digraph:
    """Draw the pipeline that ``build_graph`` with the same arguments runs.

    The steps are those of ``daskgif.graph.STEPS``, in order; a step this
    function has no special label for shows its name and what it does.

    Parameters
    ----------
    url, data_file, out, frames_dir, delimiter, duration, loop, retries, retry_delay, force
        As for :func:`daskgif.build_graph`; they label the picture. Nothing is
        fetched or written. ``frames_dir=None`` draws the frames in a ``frames``
        folder next to *out*.
    storage_options, on_error
        Accepted so that ``build_graph``'s arguments can be passed as they are.
    max_frames : int
        The most ``write-frame`` nodes drawn; beyond it the first
        ``max_frames - 1`` frames, a node for the rest, and the last frame.
    **ignored
        Other ``build_graph`` keywords (``frames_per_task``, ``on_state``).

    Returns
    -------
    graphviz.Digraph
        Shows itself in Jupyter; save it with :func:`save_picture`.

    Raises
    ------
    ImportError
        The ``graphviz`` Python package is not installed; the message says what to install.

    Examples
    --------
    >>> picture = draw_pipeline(url="https://example.com/all-images.img",
    ...                         data_file="/nonexistent/x.img")
    >>> steps = ("fetch", "split", "write-frame [i]", "combine")
    >>> [name for name in steps if name in picture.source]
    ['fetch', 'split', 'write-frame [i]', 'combine']
    """
    graphviz = import_graphviz()

    from daskgif import io
    from daskgif.graph import default_frames_dir
    from daskgif.sample import sample_path

    if max_frames < 2:
        raise ValueError(f"max_frames must be at least 2, got {max_frames!r}")
    if frames_dir is None:
        frames_dir = default_frames_dir(out)
    source = sample_path() if url is None else url
    # Backslashes in a DOT label are escapes (b'\n' would break the line): show paths and bytes as they are.
    shown_url = "the embedded sample" if url is None else graphviz.escape(url)
    name = local_path(data_file)
    skipped = not force and name is not None and os.path.isfile(name)
    count = count_frames(data_file if skipped else source, delimiter)
    files = {"data_file": data_file, "out": out, "frames_dir": frames_dir}
    plays = "loop forever" if loop == 0 else f"play {loop} time{'s' * (loop != 1)}"
    labels = {
        "fetch": f"fetch\nSkipped: {graphviz.escape(data_file)} exists\n(force=True fetches again)" if skipped
        else f"fetch\nretries={retries}, delay {retry_delay:g} s",
        "split": f"split\non {graphviz.escape(repr(delimiter))}",
        "combine": f"combine\n{duration} ms per frame, {plays}",
    }

    dot = new_picture(graphviz)

    def draw_step(step: Any) -> str:
        look = {**TASK, "style": "rounded,dashed,filled", "fillcolor": "#eeeeee"} \
            if step.name == "fetch" and skipped else TASK
        dot.node(step.name, labels.get(step.name, f"{step.name}\n{step.does}"), **look)
        return step.name

    def draw_file(param: str) -> str:
        dot.node(param, graphviz.escape(files.get(param, param)), **FILE)
        return param

    def in_frames_dir(name: str) -> str:
        return name if frames_dir in ("", ".") else io.join_path(frames_dir, name)

    def draw_map(step: Any, child: str) -> tuple[list[str], list[str]]:
        frames = "frames known at run time" if count is None else f"{count} frame{'s' * (count != 1)}"
        indices: list[int | None] = [None] if count is None else frame_indices(count, max_frames)
        with dot.subgraph(name=f"cluster_{step.name}") as fan:
            fan.attr(label=f"{step.name}: one {child} task per frame ({frames})", style="rounded,dashed",
                     color="#3b6fa8", fontname="Helvetica", fontsize="12")
            for i in indices:
                if count is None:
                    node, file = f"{child} [i]", in_frames_dir("frame_<i>.gif")
                elif i is None:
                    node, file = f"… {count - max_frames + 1} more", "…"
                else:
                    node, file = f"{child} [{i}]", in_frames_dir(io.frame_name(i, count))
                fan.node(f"write-{i}", node, **TASK)
                fan.node(f"frame-{i}", graphviz.escape(file), **FILE)
                fan.edge(f"write-{i}", f"frame-{i}")
            # Invisible edges within one rank keep the frames in order, left to right.
            with fan.subgraph() as row:
                row.attr(rank="same")
                for a, b in zip(indices, indices[1:]):
                    row.edge(f"write-{a}", f"write-{b}", style="invis")
        return [f"write-{i}" for i in indices], [f"frame-{i}" for i in indices]

    dot.node("url", shown_url, **FILE)
    wire(dot, "url", draw_step, draw_map, draw_file, lambda step: {})
    return dot


#: How a state looks in the picture of a run: fill, border, line style.
LOOKS = {
    "Success": {"fillcolor": "#d7f0d8", "color": "#2e7d32"},
    "Skipped": {"fillcolor": "#fdefc8", "color": "#b7791f"},
    "Failed": {"fillcolor": "#f9d6d5", "color": "#c62828", "penwidth": "1.6"},
    "not run": {"fillcolor": "#f2f2f2", "color": "#9e9e9e", "fontcolor": "#757575", "style": "rounded,dashed,filled"},
}
#: The states of a mapped task, worst first: the picture of the map takes the worst it holds.
ORDER = ("Failed", "Skipped", "Success")


@dataclass
class Summary:
    """What the picture shows of one task: counts per state, and, when known, attempts, time and messages."""

    counts: dict[str, int]
    attempts: int | None = None
    duration: float | None = None
    message: str = ""
    named: list[Any] = field(default_factory=list)  # State of the failed, then skipped, items of a mapped task

    @property
    def state(self) -> str:
        """The task's state; for a mapped task the worst state of its items."""
        return next((s for s in ORDER if self.counts.get(s)), next(iter(self.counts), "not run"))

    def line(self) -> str:
        """``1,918 Success, 2 Skipped, 1 Failed`` (mapped), or ``Failed after 3 attempts · 0.41 s``."""
        ordered = sorted(self.counts, key=lambda s: ORDER[::-1].index(s) if s in ORDER else len(ORDER))
        if self.named or sum(self.counts.values()) != 1:
            return ", ".join(f"{self.counts[s]:,} {s}" for s in ordered)
        text = self.state
        if self.attempts:
            text += f"{' after' if self.state == 'Failed' else ','} {self.attempts} attempt{'s' * (self.attempts != 1)}"
        return text if self.duration is None else f"{text} · {self.duration:.2f} s"


def summarize(found: Any) -> Summary:
    """Return the :class:`Summary` of one entry of a run's ``states``, in any of the forms runs are kept in.

    A :class:`~daskgif.state.State` or its dict (``--json``), a
    :class:`~daskgif.state.MappedStates` or its dict (``counts``, ``records``),
    or counts only (history lines: ``{"Success": 1}``).

    >>> summarize({"Success": 30, "Failed": 1}).line()
    '30 Success, 1 Failed'
    >>> summarize({"name": "fetch", "state": "Failed", "attempts": 3, "message": "FetchError: 503"}).line()
    'Failed after 3 attempts'
    """
    from daskgif.state import MappedStates, State

    if isinstance(found, Mapping) and "state" in found:
        found = State.from_dict(found)
    if isinstance(found, State):
        return Summary({found.state: 1}, found.attempts or None, found.duration, found.message)
    if isinstance(found, MappedStates):
        counts, records = dict(found.counts), list(found.values())
    elif isinstance(found, Mapping) and "counts" in found:
        counts = dict(found["counts"])
        records = [State.from_dict(r) for r in (found.get("records") or {}).values()]
    elif isinstance(found, Mapping):
        counts, records = {str(k): int(n) for k, n in found.items()}, []
    else:
        raise ValueError(f"a task's states must be a State, MappedStates or a mapping, got {found!r}"[:300])
    named = sorted((r for r in records if r.state in ("Failed", "Skipped")),
                   key=lambda r: (ORDER.index(r.state), r.index if r.index is not None else -1))
    return Summary(counts, named=named)


def wrap(text: str, width: int = 40, lines: int = 3) -> str:
    """*text*, masked, as at most *lines* DOT-escaped lines of *width* characters.

    >>> wrap("GifFormatError: frame 3 at byte 2975: image data does not decode", 30)
    'GifFormatError: frame 3 at\\nbyte 2975: image data does not\\ndecode'
    """
    import textwrap

    from daskgif.redact import mask

    graphviz = import_graphviz()
    kept = textwrap.wrap(mask(" ".join(text.split())), width, max_lines=lines, placeholder=" …")
    return "\n".join(graphviz.escape(line) for line in kept)


def run_view(run: Any) -> dict[str, Any]:
    """Return what the picture of *run* needs: ``ok``, ``states``, ``message``, ``title``, ``files``.

    *run* is a :class:`~daskgif.result.Result`, ``Result.to_dict()``, a line of
    ``daskgif run --json``, a history record, or a webhook body (its ``result``
    holds the full states).
    """
    from daskgif.state import State, describe, first_failure, iter_states

    if isinstance(run, Mapping) and isinstance(run.get("result"), Mapping):  # a webhook body
        run = {**run, **{k: v for k, v in run["result"].items() if k in ("states", "frames")}}
    if hasattr(run, "states") and hasattr(run, "to_dict"):  # a Result
        root = first_failure(iter_states(run.states))
        return {"ok": run.ok, "states": run.states, "message": "" if root is None else describe(root),
                "title": f"{len(run.frames)} frames in {run.duration:.2f} s" if run.ok else "",
                "files": {"out": run.path} if run.path else {}}
    if not isinstance(run, Mapping) or not isinstance(run.get("states"), Mapping):
        raise ValueError("a run must be a daskgif Result, or a record with 'states': a history line or "
                         f"`daskgif run --json` output; got {str(run)[:120]!r}")
    parameters: Mapping[str, Any] = run["parameters"] if isinstance(run.get("parameters"), Mapping) else {}
    files = {k: v for k, v in {**parameters, "out": run.get("out") or parameters.get("out")}.items()
             if k in ("url", "data_file", "frames_dir", "out") and isinstance(v, str)}
    if parameters and "url" not in files:
        files["url"] = "the embedded sample"
    bits = [f"run {run['run']}" if run.get("run") is not None else "", str(run.get("start") or "")[:19].replace("T", " "),
            f"{run['duration']:.2f} s" if isinstance(run.get("duration"), (int, float)) else ""]
    message = str(run.get("message") or "")
    if not message:  # Result.to_dict() has full states but no message: name the root failure as RunFailed does
        full = [State.from_dict(found) for found in run["states"].values() if isinstance(found, Mapping)
                and "state" in found]
        records = [State.from_dict(r) for found in run["states"].values() if isinstance(found, Mapping)
                   for r in (found.get("records") or {}).values() if isinstance(r, Mapping)]
        root = first_failure([*records, *full])
        message = "" if root is None else describe(root)
    return {"ok": bool(run.get("ok")), "states": run["states"], "message": message,
            "title": " · ".join(b for b in bits if b), "cancelled": bool(run.get("cancelled")), "files": files}


def draw_run(run: Any, *, max_named: int = 3) -> graphviz.Digraph:
    """Draw a finished run: the pipeline's steps coloured by state, with attempts and counts.

    Success is green, Skipped amber, Failed red; a step that did not run is grey
    and dashed.  A mapped step (``write-frame``) shows its counts per state and
    names its failed, then skipped, items (index and message), up to *max_named*,
    then how many more.  Steps follow ``daskgif.graph.STEPS``, as in
    :func:`draw_pipeline`.

    Parameters
    ----------
    run : Result or dict
        A :class:`~daskgif.result.Result` (``RunFailed(...).result`` too),
        ``Result.to_dict()``, a ``daskgif run --json`` line, a history record
        (``--history``; it keeps counts only, so no item is named), or a
        webhook body.
    max_named : int
        The most items of a mapped step drawn by name.

    Returns
    -------
    graphviz.Digraph
        Shows itself in Jupyter; save it with :func:`save_picture`.

    Examples
    --------
    >>> record = {"ok": False, "message": "task 'split' failed after 1 attempt: GifFormatError: bad",
    ...           "states": {"fetch": {"Skipped": 1}, "split": {"Failed": 1}}}
    >>> source = draw_run(record).source
    >>> "#c62828" in source, "combine\\nnot run" in source
    (True, True)
    """
    graphviz = import_graphviz()

    view = run_view(run)
    states = {name: summarize(found) for name, found in view["states"].items()}
    outcome = "cancelled" if view.get("cancelled") else "succeeded" if view["ok"] else "FAILED"
    title = view["title"]
    heading = f"daskgif run {outcome}" + (f" ({title})" if title else "")
    label = heading + (f"\n{wrap(view['message'], 90, 2)}" if view["message"] and not view["ok"] else "")
    dot = new_picture(graphviz, label=label, labelloc="t", fontsize="13")
    files = view["files"]

    def look(state: str, base: dict = TASK) -> dict[str, str]:
        return {**base, **LOOKS.get(state, {"fillcolor": "#e8eaf6", "color": "#5c6bc0"})}

    def draw_step(step: Any) -> str:
        found = states.get(step.name)
        text = "not run" if found is None else found.line()
        if found is not None and found.state == "Failed" and found.message:
            text += "\n" + wrap(found.message)
        dot.node(step.name, f"{step.name}\n{text}", **look("not run" if found is None else found.state))
        return step.name

    def draw_file(param: str) -> str | None:
        if param not in files:
            return None
        dot.node(param, graphviz.escape(files[param]), **FILE)
        return param

    def draw_map(step: Any, child: str) -> tuple[list[str], list[str]]:
        own, items = states.get(step.name), states.get(child)
        state = "not run" if own is None else own.state
        with dot.subgraph(name=f"cluster_{step.name}") as fan:
            fan.attr(label=f"{step.name}: {state}", fontname="Helvetica", fontsize="12", labeljust="l",
                     style="rounded,dashed" if own is None else "rounded",
                     color=LOOKS.get(state, LOOKS["not run"])["color"])
            text = "not run" if items is None else items.line()
            fan.node(child, f"{child}\n{text}", **look("not run" if items is None else items.state))
            shown = [] if items is None else items.named[:max_named]
            more = (items.counts.get("Failed", 0) + items.counts.get("Skipped", 0) - len(shown)) if items else 0
            # The named items sit beside the map's node, so that the next step stays below it.
            with fan.subgraph() as row:
                row.attr(rank="same")
                for s in shown:
                    attempts = f" after {s.attempts} attempt{'s' * (s.attempts != 1)}" \
                        if s.state == "Failed" and s.attempts else ""
                    row.node(f"{child}-{s.index}", f"frame {s.index}: {s.state}{attempts}\n{wrap(s.message)}",
                             **look(s.state, {**TASK, "fontsize": "10"}))
                if shown and more > 0:
                    row.node(f"{child}-more", f"+{more} more", shape="plaintext", fontname="Helvetica",
                             fontsize="10")
                # Left to right in map-index order: a dashed line to the first, invisible edges between the rest.
                chain = [child, *(f"{child}-{s.index}" for s in shown), *([f"{child}-more"] if shown and more > 0
                                                                          else [])]
                for a, b in zip(chain, chain[1:]):
                    row.edge(a, b, **({"style": "dashed", "arrowhead": "none", "color": "#999999"} if a == child
                                      else {"style": "invis"}))
        return [child], [child]

    def edge(step: Any) -> dict[str, str]:
        ran = step.name in states or mapped_task(step) in states
        return {} if ran else {"style": "dashed", "color": "#9e9e9e"}

    if "url" in files:
        dot.node("url", graphviz.escape(files["url"]), **FILE)
    wire(dot, "url" if "url" in files else None, draw_step, draw_map, draw_file, edge)
    return dot


def load_run(source: str, index: int = -1, storage_options: dict | None = None) -> dict[str, Any]:
    """Return one run record from *source*: a JSON object itself, or a file of them (any fsspec path).

    The file is a history file (``daskgif run --history``, one JSON line per
    run), the output of ``daskgif run --json`` (one line per run), or a single
    (pretty-printed) JSON object, such as a saved webhook body.

    Parameters
    ----------
    source : str
        JSON text starting with ``{``, or a path.
    index : int
        Which record of the file: ``0`` the first, ``-1`` the last.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        No record there, or none at *index*.

    Examples
    --------
    >>> load_run('{"ok": true, "states": {"fetch": {"Success": 1}}}')["ok"]
    True
    """
    import json

    if source.lstrip().startswith("{"):
        text, where = source, "the JSON given"
    else:
        from daskgif import io

        with io.open_input(source, storage_options) as f:
            text, where = f.read().decode("utf-8", errors="replace"), source
    try:
        records = [json.loads(text)]
    except ValueError:
        records = [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")
                   and _is_json(line)]
    records = [r for r in records if isinstance(r, dict) and isinstance(r.get("states"), dict)]
    if not records:
        raise ValueError(f"{where} holds no run record (a history line or `daskgif run --json` output)")
    if not -len(records) <= index < len(records):
        raise ValueError(f"run index {index} is out of range: {where} holds {len(records)} run record"
                         f"{'s' * (len(records) != 1)} (0 to {len(records) - 1}, or -1 for the last)")
    return records[index]


def _is_json(line: str) -> bool:
    import json

    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def picture_file(filename: str, format: str | None = None) -> str:  # noqa: A002 - dask's name
    """Return the file name a picture in *format* is saved as, as dask's ``visualize`` does.

    No suffix: *format*'s is added (PNG by default); a suffix must agree with *format*.

    >>> picture_file("run"), picture_file("run", "svg"), picture_file("run.svg"), picture_file("run.dot", "dot")
    ('run.png', 'run.svg', 'run.svg', 'run.dot')
    >>> picture_file("run.png", "svg")
    Traceback (most recent call last):
    ...
    ValueError: format 'svg' does not match the file name 'run.png'; give one of them
    """
    formats = sorted(set(FORMATS.values()))
    if format is not None and format not in formats:
        raise ValueError(f"format must be one of {', '.join(formats)}, got {format!r}")
    suffix = os.path.splitext(filename)[1].lower()
    if not suffix:
        return f"{filename}.{format or 'png'}"
    if format is not None and FORMATS.get(suffix) != format:
        raise ValueError(f"format {format!r} does not match the file name {filename!r}; give one of them")
    return filename


def save_picture(picture: graphviz.Digraph, filename: str, storage_options: dict | None = None) -> str:
    """Write *picture* to *filename* in the format its suffix names.

    Parameters
    ----------
    picture : graphviz.Digraph
        From :func:`draw_pipeline` or :func:`draw_run`.
    filename : str
        Any fsspec path ending in ``.svg``, ``.png``, ``.pdf``, or ``.dot`` /
        ``.gv`` (the Graphviz source, written without running ``dot``).
        Written atomically: a failed save leaves no partial picture.
    storage_options : dict, optional
        fsspec options for *filename*.

    Returns
    -------
    str
        *filename*.

    Raises
    ------
    FileNotFoundError
        When a rendered format is asked for and Graphviz's ``dot`` is not installed.
    ImportError
        The ``graphviz`` Python package is not installed.
    """
    suffix = os.path.splitext(filename)[1].lower()
    try:
        fmt = FORMATS[suffix]
    except KeyError:
        raise ValueError(f"picture file must end in one of {', '.join(FORMATS)}, got {filename!r}") from None
    graphviz = import_graphviz()

    from daskgif import io

    try:
        data = picture.source.encode() if fmt == "dot" else picture.pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:
        raise FileNotFoundError(f"Graphviz's dot program was not found; install Graphviz to render {fmt} "
                                "(Debian/Ubuntu: apt-get install graphviz), or write a .dot file") from e
    with io.atomic_write(filename, storage_options) as f:
        f.write(data)
    return filename
