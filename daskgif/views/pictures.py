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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daskgif.errors import DaskgifError

if TYPE_CHECKING:
    import graphviz

__all__ = ["draw_pipeline", "save_picture", "picture_file", "count_frames", "FORMATS"]

#: What to install for pictures, in one line (``daskgif graph`` prints it).
INSTALL = ("pip install graphviz (the Python package), and Graphviz's dot program for .svg/.png/.pdf "
           "(Debian/Ubuntu: apt-get install graphviz)")

#: Picture formats :func:`save_picture` writes, by file suffix.
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

TASK = {"shape": "box", "style": "rounded,filled", "fillcolor": "#dbe8f6", "color": "#3b6fa8",
        "fontname": "Helvetica"}
FILE = {"shape": "note", "style": "filled", "fillcolor": "#f5f5f0", "color": "#888888",
        "fontname": "Helvetica", "fontsize": "11"}


def count_frames(path: str, delimiter: bytes = b"\n\n\n\n") -> int | None:
    """Return how many frames the local image-data file *path* holds.

    Returns ``None`` when *path* is not a readable local file or cannot be
    split; a picture then shows the map symbolically.
    """
    from daskgif import storage
    from daskgif.gif.split import split_frames
    from daskgif.pipeline.settings import read_setting

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
    """Return :data:`daskgif.pipeline.steps.STEPS`, the one description of the pipeline both pictures follow."""
    from daskgif.pipeline.steps import STEPS

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


def draw_pipeline(*args: Any, max_frames: int = 3, **kwargs: Any) -> graphviz.Digraph:
    """Draw the pipeline that ``build_graph`` with the same arguments runs.

    The steps are those of ``daskgif.pipeline.steps.STEPS``, in order; a step this
    function has no special label for shows its name and what it does.

    Parameters
    ----------
    *args, **kwargs
        The parameters of :func:`daskgif.build_graph`, checked as it checks
        them (:func:`daskgif.pipeline.parameters.bind`); they label the picture.
        Nothing is fetched or written. ``frames_dir=None`` draws the frames in
        a ``frames`` folder next to *out*.
    max_frames : int
        The most ``write-frame`` nodes drawn; beyond it the first
        ``max_frames - 1`` frames, a node for the rest, and the last frame.

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
    from daskgif.pipeline.parameters import bind

    if max_frames < 2:
        raise ValueError(f"max_frames must be at least 2, got {max_frames!r}")
    return draw_arguments(bind(*args, **kwargs), max_frames)


def draw_arguments(arguments: dict[str, Any], max_frames: int) -> graphviz.Digraph:
    """Draw the pipeline for checked ``build_graph`` *arguments* (:func:`draw_pipeline`)."""
    graphviz = import_graphviz()

    from daskgif import storage
    from daskgif.pipeline.sample import sample_path
    from daskgif.pipeline.settings import default_frames_dir

    url, data_file, out, frames_dir, delimiter = (arguments[name] for name in
                                                  ("url", "data_file", "out", "frames_dir", "delimiter"))
    duration, loop, retries, retry_delay, force = (arguments[name] for name in
                                                   ("duration", "loop", "retries", "retry_delay", "force"))
    if frames_dir is None:
        frames_dir = default_frames_dir(out)
    source = sample_path() if url is None else url
    # Backslashes in a DOT label are escapes (b'\n' would break the line): show paths and bytes as they are.
    shown_url = "the embedded sample" if url is None else graphviz.escape(url)

    name = storage.local_path(data_file)
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
        return name if frames_dir in ("", ".") else storage.join_path(frames_dir, name)

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
                    node, file = f"{child} [{i}]", in_frames_dir(storage.frame_name(i, count))
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

    from daskgif import storage

    try:
        data = picture.source.encode() if fmt == "dot" else picture.pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:
        raise FileNotFoundError(f"Graphviz's dot program was not found; install Graphviz to render {fmt} "
                                "(Debian/Ubuntu: apt-get install graphviz), or write a .dot file") from e
    with storage.atomic_write(filename, storage_options) as f:
        f.write(data)
    return filename
