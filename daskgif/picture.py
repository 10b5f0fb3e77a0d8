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
from typing import TYPE_CHECKING, Any

from daskgif.errors import DaskgifError

if TYPE_CHECKING:
    import graphviz

__all__ = ["draw_pipeline", "save_picture", "count_frames", "FORMATS"]

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


def frames_next_to(out: str) -> str:
    """Return the default ``frames_dir``: a ``frames`` folder next to *out*.

    >>> frames_next_to("clip.gif")
    'frames'
    >>> frames_next_to("s3://bucket/etl/clip.gif")
    's3://bucket/etl/frames'
    """
    head, sep, _ = out.rpartition("/")
    return f"{head}{sep}frames"


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
    from daskgif.sample import sample_path

    if max_frames < 2:
        raise ValueError(f"max_frames must be at least 2, got {max_frames!r}")
    if frames_dir is None:
        frames_dir = frames_next_to(out)
    source = sample_path() if url is None else url
    # Backslashes in a DOT label are escapes (b'\n' would break the line): show paths and bytes as they are.
    shown_url = "the embedded sample" if url is None else graphviz.escape(url)
    name = local_path(data_file)
    skipped = not force and name is not None and os.path.isfile(name)
    count = count_frames(data_file if skipped else source, delimiter)

    dot = graphviz.Digraph("daskgif", graph_attr={"rankdir": "TB", "nodesep": "0.3", "ranksep": "0.35",
                                                   "fontname": "Helvetica", "ordering": "out"})
    dot.attr("edge", color="#555555", arrowsize="0.7")
    retry = f"retries={retries}, delay {retry_delay:g} s"

    dot.node("url", shown_url, **FILE)
    if skipped:
        dot.node("fetch", f"fetch\nSkipped: {graphviz.escape(data_file)} exists\n(force=True fetches again)",
                 **{**TASK, "style": "rounded,dashed,filled", "fillcolor": "#eeeeee"})
    else:
        dot.node("fetch", f"fetch\n{retry}", **TASK)
    dot.node("data_file", graphviz.escape(data_file), **FILE)
    dot.node("split", f"split\non {graphviz.escape(repr(delimiter))}", **TASK)
    dot.edges([("url", "fetch"), ("fetch", "data_file"), ("data_file", "split")])

    def in_frames_dir(name: str) -> str:
        return name if frames_dir in ("", ".") else io.join_path(frames_dir, name)

    frames = "frames known at run time" if count is None else f"{count} frame{'s' * (count != 1)}"
    indices = [None] if count is None else frame_indices(count, max_frames)
    with dot.subgraph(name="cluster_map") as fan:
        fan.attr(label=f"map-frames: one write-frame task per frame ({frames})", style="rounded,dashed",
                 color="#3b6fa8", fontname="Helvetica", fontsize="12")
        for i in indices:
            if i is None and count is None:
                node, file = "write-frame [i]", in_frames_dir("frame_<i>.gif")
            elif i is None:
                node, file = f"… {count - max_frames + 1} more", "…"
            else:
                node, file = f"write-frame [{i}]", in_frames_dir(io.frame_name(i, count))
            fan.node(f"write-{i}", node, **TASK)
            fan.node(f"frame-{i}", graphviz.escape(file), **FILE)
            fan.edge(f"write-{i}", f"frame-{i}")
        # Invisible edges within one rank keep the frames in order, left to right.
        with fan.subgraph() as row:
            row.attr(rank="same")
            for a, b in zip(indices, indices[1:]):
                row.edge(f"write-{a}", f"write-{b}", style="invis")
    for i in indices:
        dot.edge("split", f"write-{i}")
        dot.edge(f"frame-{i}", "combine")

    plays = "loop forever" if loop == 0 else f"play {loop} time{'s' * (loop != 1)}"
    dot.node("combine", f"combine\n{duration} ms per frame, {plays}", **TASK)
    dot.node("out", graphviz.escape(out), **FILE)
    dot.edge("combine", "out")
    return dot


def save_picture(picture: graphviz.Digraph, filename: str) -> str:
    """Write *picture* to *filename* in the format its suffix names.

    Parameters
    ----------
    picture : graphviz.Digraph
        From :func:`draw_pipeline`.
    filename : str
        Ends in ``.svg``, ``.png``, ``.pdf``, or ``.dot`` / ``.gv`` (the Graphviz
        source, written without running ``dot``).

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

    try:
        data = picture.source.encode() if fmt == "dot" else picture.pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:
        raise FileNotFoundError(f"Graphviz's dot program was not found; install Graphviz to render {fmt} "
                                "(Debian/Ubuntu: apt-get install graphviz), or write a .dot file") from e
    with open(filename, "wb") as f:
        f.write(data)
    return filename
