"""Pictures of the pipeline as it will run (:func:`draw_pipeline`) and as it ran (:func:`draw_run`).

Unlike ``build_graph(...).visualize()``, both draw the ``write-frame`` tasks launched at run time, and
the files between the steps.  SVG, PNG and PDF need Graphviz's ``dot`` program.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from daskgif import storage
from daskgif.core.state import State, describe, first_failure
from daskgif.errors import DaskgifError
from daskgif.gif.split import DELIMITER, split_frames
from daskgif.pipeline.parameters import bind
from daskgif.pipeline.sample import sample_path
from daskgif.pipeline.settings import default_frames_dir, read_setting
from daskgif.pipeline import steps
from daskgif.redact import mask

if TYPE_CHECKING:
    import graphviz

__all__ = ["draw_pipeline", "draw_run", "load_run", "save_picture", "picture_file", "count_frames", "FORMATS",
           "LOOKS"]

#: Picture formats :func:`save_picture` writes, by file suffix.
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

TASK = {"shape": "box", "style": "rounded,filled", "fillcolor": "#dbe8f6", "color": "#3b6fa8", "fontname": "Helvetica"}
FILE = {"shape": "note", "style": "filled", "fillcolor": "#f5f5f0", "color": "#888888",
        "fontname": "Helvetica", "fontsize": "11"}
#: How a state looks in the picture of a run: fill, border, line style.
LOOKS = {
    "Success": {"fillcolor": "#d7f0d8", "color": "#2e7d32"},
    "Skipped": {"fillcolor": "#fdefc8", "color": "#b7791f"},
    "Failed": {"fillcolor": "#f9d6d5", "color": "#c62828", "penwidth": "1.6"},
    "not run": {"fillcolor": "#f2f2f2", "color": "#9e9e9e", "fontcolor": "#757575", "style": "rounded,dashed,filled"},
}
#: The states of a mapped task, worst first: the picture of the map takes the worst it holds.
ORDER = ("Failed", "Skipped", "Success")


def count_frames(path: str, delimiter: bytes = DELIMITER) -> int | None:
    """Return how many frames the local image-data file *path* holds; ``None`` if it is not one or does not split."""
    name = storage.local_path(path)
    if name is None or not os.path.isfile(name):
        return None
    try:
        with storage.open_input(name) as f:
            return sum(1 for _ in split_frames(f, delimiter, chunk_size=read_setting("chunk-size"),
                                               max_pixels=read_setting("max-pixels")))
    except (OSError, DaskgifError):
        return None


def import_graphviz():
    """Return the ``graphviz`` module, or raise an ``ImportError`` that says what to install."""
    try:
        import graphviz
    except ImportError as e:
        raise ImportError("drawing the pipeline needs the graphviz Python package: pip install graphviz (and for "
                          ".svg/.png/.pdf Graphviz's dot program, Debian/Ubuntu: apt-get install graphviz)") from e
    return graphviz


def in_a_row(fan: graphviz.Digraph, names: list[str], **first: str) -> None:
    """Keep the nodes *names* on one rank, in order: invisible edges between them (the first one drawn as *first*)."""
    with fan.subgraph() as row:
        row.attr(rank="same")
        for n, (a, b) in enumerate(zip(names, names[1:])):
            row.edge(a, b, **(first if n == 0 and first else {"style": "invis"}))


def draw_steps(files: Mapping[str, str], draw_step: Callable[[Any], tuple[str, dict]],
               draw_map: Callable[[graphviz.Digraph, Any], tuple[list[str], list[str]]],
               edge: Callable[[Any], dict] = lambda step: {}, **graph_attr: str) -> graphviz.Digraph:
    """Draw the pipeline's steps in order, each after what the one before it wrote: the layout of both pictures.

    ``draw_step(step)`` gives a step's label and look, ``draw_map(cluster, step)`` draws a mapping step and gives
    its first and last nodes, ``edge(step)`` the attributes of the edges into *step* and the file it writes.
    """
    graphviz = import_graphviz()
    files = {name: mask(path) for name, path in files.items()}  # a picture is shown and shared: no credentials
    dot = graphviz.Digraph("daskgif", graph_attr={"rankdir": "TB", "nodesep": "0.3", "ranksep": "0.35",
                                                   "fontname": "Helvetica", "ordering": "out", **graph_attr})
    dot.attr("edge", color="#555555", arrowsize="0.7")
    tails = []
    if "url" in files:
        dot.node("url", graphviz.escape(files["url"]), **FILE)
        tails = ["url"]
    for step in steps.STEPS:  # read when drawn: the pipeline may have grown a step
        if step.maps:
            with dot.subgraph(name=f"cluster_{step.name}") as fan:
                heads, ends = draw_map(fan, step)
        else:
            label, look = draw_step(step)
            dot.node(step.name, label, **look)
            heads = ends = [step.name]
        for tail in tails:
            for head in heads:
                dot.edge(tail, head, **edge(step))
        tails = ends
        if not step.maps and step.writes in files:
            dot.node(step.writes, graphviz.escape(files[step.writes]), **FILE)
            dot.edge(step.name, step.writes, **edge(step))
            tails = [step.writes]
    return dot


def draw_pipeline(*args: Any, max_frames: int = 3, **kwargs: Any) -> graphviz.Digraph:
    """Draw the pipeline that ``build_graph`` with the same arguments (checked as it checks them) runs.

    Nothing is fetched or written.  At most *max_frames* ``write-frame`` nodes are drawn (the rest
    as one).  The ``graphviz.Digraph`` shows itself in Jupyter; save it with :func:`save_picture`.

    >>> picture = draw_pipeline(url="https://example.com/all-images.img",
    ...                         data_file="/nonexistent/x.img")
    >>> steps = ("fetch", "split", "write-frame [i]", "combine")
    >>> [name for name in steps if name in picture.source]
    ['fetch', 'split', 'write-frame [i]', 'combine']
    """
    if max_frames < 2:
        raise ValueError(f"max_frames must be at least 2, got {max_frames!r}")
    arguments = bind(*args, **kwargs)
    graphviz = import_graphviz()
    url, data_file, out, loop = (arguments[name] for name in ("url", "data_file", "out", "loop"))
    frames_dir = default_frames_dir(out) if arguments["frames_dir"] is None else arguments["frames_dir"]
    name = storage.local_path(data_file)
    skipped = not arguments["force"] and name is not None and os.path.isfile(name)
    count = count_frames(data_file if skipped else sample_path() if url is None else url, arguments["delimiter"])
    plays = "loop forever" if loop == 0 else f"play {loop} time{'s' * (loop != 1)}"
    # Backslashes in a DOT label are escapes (b'\n' would break the line): show paths and bytes as they are.
    labels = {
        "fetch": f"fetch\nSkipped: {graphviz.escape(data_file)} exists\n(force=True fetches again)" if skipped
        else f"fetch\nretries={arguments['retries']}, delay {arguments['retry_delay']:g} s",
        "split": f"split\non {graphviz.escape(repr(arguments['delimiter']))}",
        "combine": f"combine\n{arguments['duration']} ms per frame, {plays}",
    }

    def draw_step(step: Any) -> tuple[str, dict]:
        look = {**TASK, "style": "rounded,dashed,filled", "fillcolor": "#eeeeee"} \
            if step.name == "fetch" and skipped else TASK
        return labels.get(step.name, f"{step.name}\n{step.does}"), look

    def in_frames_dir(name: str) -> str:
        return name if frames_dir in ("", ".") else storage.join_path(frames_dir, name)

    def draw_map(fan: graphviz.Digraph, step: Any) -> tuple[list[str], list[str]]:
        frames = "frames known at run time" if count is None else f"{count} frame{'s' * (count != 1)}"
        fan.attr(label=f"{step.name}: one {step.maps} task per frame ({frames})", style="rounded,dashed",
                 color="#3b6fa8", fontname="Helvetica", fontsize="12")
        if count is None:
            tasks = [(f"{step.maps} [i]", in_frames_dir("frame_<i>.gif"))]
        else:  # the first max_frames - 1 frames, a node for the rest, and the last
            shown = range(count) if count <= max_frames else [*range(max_frames - 1), None, count - 1]
            tasks = [(f"… {count - max_frames + 1} more", "…") if i is None
                     else (f"{step.maps} [{i}]", in_frames_dir(storage.frame_name(i, count))) for i in shown]
        for n, (task, file) in enumerate(tasks):
            fan.node(f"write-{n}", task, **TASK)
            fan.node(f"frame-{n}", graphviz.escape(file), **FILE)
            fan.edge(f"write-{n}", f"frame-{n}")
        in_a_row(fan, [f"write-{n}" for n in range(len(tasks))])
        return [f"write-{n}" for n in range(len(tasks))], [f"frame-{n}" for n in range(len(tasks))]

    files = {"url": "the embedded sample" if url is None else url, "data_file": data_file, "out": out}
    return draw_steps(files, draw_step, draw_map)


@dataclass
class Summary:
    """What the picture of a run shows of one task: counts per state, and, when known, attempts, time and message."""

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
        """``1,918 Success, 2 Skipped, 1 Failed`` (mapped), ``Failed after 3 attempts · 0.41 s``, or ``not run``."""
        if self.named or sum(self.counts.values()) > 1:
            ordered = sorted(self.counts, key=lambda s: ORDER[::-1].index(s) if s in ORDER else len(ORDER))
            return ", ".join(f"{self.counts[s]:,} {s}" for s in ordered)
        text = self.state
        if self.attempts:
            text += f"{' after' if self.state == 'Failed' else ','} {self.attempts} attempt{'s' * (self.attempts != 1)}"
        return text if self.duration is None else f"{text} · {self.duration:.2f} s"


def summarize(found: Any) -> Summary:
    """The :class:`Summary` of a task in a run record's ``states``: a state, a mapped task's, or counts only.

    >>> summarize({"Success": 30, "Failed": 1}).line()
    '30 Success, 1 Failed'
    >>> summarize({"name": "fetch", "state": "Failed", "attempts": 3, "message": "FetchError: 503"}).line()
    'Failed after 3 attempts'
    """
    if not isinstance(found, Mapping):
        raise ValueError(f"a task's states must be a mapping, got {found!r}"[:300])
    if "state" in found:
        state = State.from_dict(found)
        return Summary({state.state: 1}, state.attempts or None, state.duration, state.message)
    if "counts" not in found:
        return Summary({str(k): int(n) for k, n in found.items()})
    records = [State.from_dict(r) for r in (found.get("records") or {}).values()]
    named = sorted((r for r in records if r.state in ("Failed", "Skipped")),
                   key=lambda r: (ORDER.index(r.state), r.index if r.index is not None else -1))
    return Summary(dict(found["counts"]), named=named)


def wrap(text: str, width: int = 40, lines: int = 3) -> str:
    """*text*, masked, as at most *lines* DOT-escaped lines of *width* characters.

    >>> wrap("GifFormatError: frame 3 at byte 2975: image data does not decode", 30)
    'GifFormatError: frame 3 at\\nbyte 2975: image data does not\\ndecode'
    """
    kept = textwrap.wrap(mask(" ".join(text.split())), width, max_lines=lines, placeholder=" …")
    return "\n".join(import_graphviz().escape(line) for line in kept)


def run_view(run: Any) -> tuple[str, dict[str, Summary], dict[str, str]]:
    """Return the title of *run* (as :func:`draw_run` takes it), its tasks' summaries and its files by parameter."""
    if hasattr(run, "to_dict"):  # a Result
        run = run.to_dict()
    if isinstance(run, Mapping) and isinstance(run.get("result"), Mapping):  # a webhook body
        run = {**run, **{k: v for k, v in run["result"].items() if k in ("states", "frames")}}
    if not isinstance(run, Mapping) or not isinstance(run.get("states"), Mapping):
        raise ValueError("a run must be a daskgif Result, or a record with 'states': a history line or "
                         f"`daskgif run --json` output; got {str(run)[:120]!r}")
    parameters: Mapping[str, Any] = run["parameters"] if isinstance(run.get("parameters"), Mapping) else {}
    files = {k: v for k, v in {**parameters, "out": run.get("out") or parameters.get("out")}.items()
             if k in ("url", "data_file", "frames_dir", "out") and isinstance(v, str)}
    if parameters and "url" not in files:
        files["url"] = "the embedded sample"
    written = run.get("frames_written")
    bits = [f"run {run['run']}" if run.get("run") is not None else "",
            str(run.get("start") or "")[:19].replace("T", " "),
            f"{written} frames" if run.get("ok") and isinstance(written, int) else "",
            f"{run['duration']:.2f} s" if isinstance(run.get("duration"), (int, float)) else ""]
    outcome = "cancelled" if run.get("cancelled") else "succeeded" if run.get("ok") else "FAILED"
    title = f"daskgif run {outcome}" + (f" ({' · '.join(b for b in bits if b)})" if any(bits) else "")
    message = "" if run.get("ok") else str(run.get("message") or "")
    if not message and not run.get("ok"):  # Result.to_dict() has no message: name the root failure as RunFailed does
        tasks = [task for task in run["states"].values() if isinstance(task, Mapping)]
        records = [State.from_dict(r) for task in tasks for r in (task.get("records") or {}).values()
                   if isinstance(r, Mapping)]
        root = first_failure([*records, *(State.from_dict(task) for task in tasks if "state" in task)])
        message = "" if root is None else describe(root)
    title += f"\n{wrap(message, 90, 2)}" if message else ""
    return title, {name: summarize(task) for name, task in run["states"].items()}, files


def draw_run(run: Any, filename: str | None = None, format: str | None = None, *,  # noqa: A002 - dask's name
             max_named: int = 3) -> graphviz.Digraph:
    """Draw a finished run: the pipeline's steps coloured by state, with attempts and counts.

    *run* is a :class:`~daskgif.pipeline.result.Result` (``RunFailed(...).result`` too), its ``to_dict()``,
    a ``daskgif run --json`` line, a history record (counts only) or a webhook body.  Success is green,
    Skipped amber, Failed red, not run grey and dashed; ``write-frame`` names up to *max_named* failed,
    then skipped, frames.  As dask's ``visualize``, it saves to *filename* (any fsspec path) in *format*
    (``"svg"``, ``"png"``, ``"pdf"`` or ``"dot"``; default: the suffix says, else PNG).

    >>> record = {"ok": False, "message": "task 'split' failed after 1 attempt: GifFormatError: bad",
    ...           "states": {"fetch": {"Skipped": 1}, "split": {"Failed": 1}}}
    >>> source = draw_run(record).source
    >>> "#c62828" in source, "combine\\nnot run" in source
    (True, True)
    """
    title, states, files = run_view(run)

    def look(state: str, **base: str) -> dict[str, str]:
        return {**TASK, **base, **LOOKS.get(state, {"fillcolor": "#e8eaf6", "color": "#5c6bc0"})}

    def draw_step(step: Any) -> tuple[str, dict]:
        summary = states.get(step.name, Summary({}))
        failed = f"\n{wrap(summary.message)}" if summary.state == "Failed" and summary.message else ""
        return f"{step.name}\n{summary.line()}{failed}", look(summary.state)

    def draw_map(fan: graphviz.Digraph, step: Any) -> tuple[list[str], list[str]]:
        state, items = states.get(step.name, Summary({})).state, states.get(step.maps, Summary({}))
        fan.attr(label=f"{step.name}: {state}", fontname="Helvetica", fontsize="12", labeljust="l",
                 style="rounded,dashed" if state == "not run" else "rounded",
                 color=LOOKS.get(state, LOOKS["not run"])["color"])
        fan.node(step.maps, f"{step.maps}\n{items.line()}", **look(items.state))
        shown = items.named[:max_named]
        names = [f"{step.maps}-{s.index}" for s in shown]
        for name, s in zip(names, shown):
            failed = s.state == "Failed" and s.attempts
            attempts = f" after {s.attempts} attempt{'s' * (s.attempts != 1)}" if failed else ""
            fan.node(name, f"frame {s.index}: {s.state}{attempts}\n{wrap(s.message)}", **look(s.state, fontsize="10"))
        more = items.counts.get("Failed", 0) + items.counts.get("Skipped", 0) - len(shown)
        if shown and more > 0:
            names.append(f"{step.maps}-more")
            fan.node(names[-1], f"+{more} more", shape="plaintext", fontname="Helvetica", fontsize="10")
        # The named items sit beside the map's node, so that the next step stays below it.
        in_a_row(fan, [step.maps, *names], style="dashed", arrowhead="none", color="#999999")
        return [step.maps], [step.maps]

    def edge(step: Any) -> dict[str, str]:
        return {} if step.name in states or step.maps in states else {"style": "dashed", "color": "#9e9e9e"}

    dot = draw_steps(files, draw_step, draw_map, edge, label=title, labelloc="t", fontsize="13")
    if filename is not None:
        save_picture(dot, picture_file(filename, format), getattr(run, "storage_options", None))
    return dot


def load_run(source: str, index: int = -1, storage_options: dict | None = None) -> dict[str, Any]:
    """Return one run record from *source*: a JSON object itself, or a file of them (any fsspec path).

    JSON lines (a history file, ``daskgif run --json`` output) or one JSON object (a webhook body).

    >>> load_run('{"ok": true, "states": {"fetch": {"Success": 1}}}')["ok"]
    True
    """
    if source.lstrip().startswith("{"):
        text, where = source, "the JSON given"
    else:
        with storage.open_input(source, storage_options) as f:
            text, where = f.read().decode("utf-8", errors="replace"), source

    def parse(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            return None

    whole = parse(text)
    records = [r for r in ([whole] if whole is not None else map(parse, text.splitlines()))
               if isinstance(r, dict) and isinstance(r.get("states"), dict)]
    if not records:
        raise ValueError(f"{where} holds no run record (a history line or `daskgif run --json` output)")
    if not -len(records) <= index < len(records):
        raise ValueError(f"run index {index} is out of range: {where} holds {len(records)} run record"
                         f"{'s' * (len(records) != 1)} (0 to {len(records) - 1}, or -1 for the last)")
    return records[index]


def picture_file(filename: str, format: str | None = None) -> str:  # noqa: A002 - dask's name
    """Return the file name a picture in *format* is saved as, as dask's ``visualize`` does (PNG by default).

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
    """Write *picture* to *filename* (any fsspec path), atomically, in the format its suffix names; return it."""
    suffix = os.path.splitext(filename)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"picture file must end in one of {', '.join(FORMATS)}, got {filename!r}")
    fmt, graphviz = FORMATS[suffix], import_graphviz()
    try:
        data = picture.source.encode() if fmt == "dot" else picture.pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:
        raise FileNotFoundError(f"Graphviz's dot program was not found; install Graphviz to render {fmt} "
                                "(Debian/Ubuntu: apt-get install graphviz), or write a .dot file") from e
    with storage.atomic_write(filename, storage_options) as f:
        f.write(data)
    return filename
