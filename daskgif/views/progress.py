"""Frame progress, from the runs' own messages (:mod:`daskgif.core.events`): nothing polls the scheduler.

Use it as Dask's ``ProgressBar`` is used::

    with daskgif.progress():
        result = graph.compute()

In Jupyter it is one HTML line updated in place; in a terminal, one line
redrawn with ``\\r``; written to anything else, nothing until the end.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from daskgif.core import events
from daskgif.core.runtime import find_client

__all__ = ["Progress", "progress", "bar"]


def bar(done: int, total: int | None, width: int = 30) -> str:
    """One progress line; *total* is ``None`` while the frame count is unknown.

    >>> bar(12, 48, width=8)
    '[##      ] 12/48 frames'
    >>> bar(0, None, width=8)
    '[        ] waiting for the frame count'
    """
    if total is None:
        return f"[{' ' * width}] waiting for the frame count"
    filled = width * min(done, total) // max(total, 1)
    return f"[{'#' * filled}{' ' * (width - filled)}] {min(done, total)}/{total} frames"


class Progress:
    """Count the frames of the runs started while it is active, and draw them.

    Parameters
    ----------
    stream : file, optional
        Where a terminal line is drawn; default ``sys.stderr``.
    interval : float
        Least seconds between redraws.
    client : distributed.Client, optional
        Whose messages to follow; default the current client, if any.
    """

    def __init__(self, stream: IO[str] | None = None, interval: float = 0.1, client: Any = None):
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval
        self.client = client
        self.done = 0
        self.total: int | None = None
        self._runs: set[str] = set()
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._handle: Any = None

    def __enter__(self) -> Progress:
        client = self.client if self.client is not None else find_client()
        if client is not None:
            events.relay(client)
        self._handle = _notebook_display()
        self.unsubscribe = events.bus.subscribe(self.receive)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unsubscribe()
        self.draw(final=True)

    def receive(self, msg: dict) -> None:
        """Count one message; redraw at most every *interval* seconds."""
        with self._lock:
            kind = msg.get("kind")
            if kind == "map":
                self._runs.add(msg["run"])
                self.total = (self.total or 0) + msg["total"]
            elif kind == "frames" and msg.get("run") in self._runs:
                self.done += sum(msg["counts"].values())
            else:
                return
            due = time.monotonic() - self._drawn >= self.interval
        if due:
            self.draw()

    @property
    def line(self) -> str:
        """The progress line as it stands."""
        return bar(self.done, self.total)

    def draw(self, final: bool = False) -> None:
        """Redraw the line (and end it with a newline when *final*)."""
        self._drawn = time.monotonic()
        if self.total is None and final:
            return
        if self._handle is not None:
            from IPython.display import HTML

            value = 0 if not self.total else min(self.done, self.total)
            self._handle.update(HTML(f'<progress value="{value}" max="{self.total or 1}" style="width:20em">'
                                     f'</progress> <code>{self.line.split("] ", 1)[-1]}</code>'))
        elif self.stream.isatty():
            self.stream.write("\r" + self.line + ("\n" if final else ""))
            self.stream.flush()
        elif final:
            self.stream.write(self.line + "\n")


def _notebook_display() -> Any:
    """A display handle updated in place when running in a Jupyter kernel, else ``None``."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return None
    from IPython.display import HTML, display

    return display(HTML(""), display_id=True)


def progress(stream: IO[str] | None = None, interval: float = 0.1, client: Any = None) -> Progress:
    """Show the frame progress of the runs computed inside a ``with`` block.

    In Jupyter it is one HTML ``<progress>`` line, updated in place; in a
    terminal, one line redrawn with ``\\r`` (``[#####    ] 12/32 frames``);
    written to anything else, one line at the end.  It counts frames from the
    runs' own messages (:mod:`daskgif.core.events`), on a cluster or a local
    scheduler: nothing polls the scheduler.

    Parameters
    ----------
    stream, interval, client
        As for :class:`Progress`.

    Returns
    -------
    Progress
        A context manager.

    Examples
    --------
    >>> import io, daskgif
    >>> graph = daskgif.build_graph(data_file="memory://p/d.img", out="memory://p/c.gif")
    >>> with daskgif.progress(stream=io.StringIO()) as bar:
    ...     result = graph.compute(scheduler="sync")
    >>> bar.line
    '[##############################] 32/32 frames'
    """
    return Progress(stream=stream, interval=interval, client=client)
