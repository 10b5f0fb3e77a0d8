"""Frame progress, from the runs' own messages (:mod:`daskgif.core.events`), drawn where the user looks."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import IO, Any

from tqdm import tqdm

from daskgif.pipeline.settings import read_setting
from daskgif.core import events
from daskgif.core.runtime import find_client
from daskgif.core.state import FAILED

__all__ = ["Progress", "progress", "describe", "fresh_line"]

#: The terminal bar: tqdm's own layout, counted in frames.
BAR_FORMAT = "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"


def describe(done: int, total: int | None, elapsed: float, rate: float | None = None, failed: int = 0) -> str:
    """One plain progress line: frames done of *total* (*failed* of them), *rate* (frames a second), *elapsed*
    seconds, ETA.

    >>> describe(5344, 40000, elapsed=12.5, rate=430.04)
    '5344/40000 frames (13%), 430.0 frames/s, elapsed 00:12, ETA 01:20'
    >>> describe(32, 32, elapsed=1.0, rate=32.0, failed=1)
    '32/32 frames (100%, 1 failed), 32.0 frames/s, elapsed 00:01, ETA 00:00'
    >>> describe(0, 27, elapsed=3.2)
    '0/27 frames (0%), ? frames/s, elapsed 00:03, ETA ?'
    >>> describe(0, None, elapsed=3.2)
    'waiting for the frame count, elapsed 00:03'
    """
    if total is None:
        return f"waiting for the frame count, elapsed {tqdm.format_interval(elapsed)}"
    done = min(done, total)
    eta = tqdm.format_interval((total - done) / rate) if rate else "?"
    share = f"{100 * done // max(total, 1)}%" + (f", {failed} failed" if failed else "")
    return (f"{done}/{total} frames ({share}), {f'{rate:,.1f}' if rate else '?'} frames/s, "
            f"elapsed {tqdm.format_interval(elapsed)}, ETA {eta}")


class _Line:
    """A terminal stream that knows whether its last line is open: a bar drawn with ``\\r`` and not yet ended."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.open = False

    def write(self, text: str) -> int:
        if text:
            self.open = not text.endswith("\n")
        return self.stream.write(text)

    def end(self) -> str:
        """``"\\n"`` if the line is open, which then counts as ended; else ``""``.  Lock-free, for signal handlers."""
        was, self.open = self.open, False
        return "\n" if was else ""

    def __getattr__(self, name: str) -> Any:  # flush, fileno (tqdm reads the terminal's width), encoding
        return getattr(self.stream, name)


class _Bar(tqdm):
    monitor_interval = 0  # no monitor thread: the bar is redrawn as messages come


_OPEN: list[_Line] = []  # the lines of the bars being drawn now


def fresh_line(stream: IO[str] | None = None) -> str:
    """``"\\n"`` when a progress bar's line is open on *stream* (default ``sys.stderr``), else ``""``; takes no lock.

    >>> fresh_line()
    ''
    """
    stream = sys.stderr if stream is None else stream
    return next((line.end() for line in list(_OPEN) if line.stream is stream), "")


class Progress:
    """Count the frames of the runs started while it is active, and draw them (see :func:`progress`)."""

    def __init__(self, stream: IO[str] | None = None, interval: float | None = None, client: Any = None,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = sys.stderr if stream is None else stream
        self.interval, self.client, self.clock = interval, client, clock
        self.done = self.failed = 0
        self.total: int | None = None
        self.started = self.writing = self._drawn = clock()
        self._runs: set[str] = set()
        self._lock = threading.Lock()
        self._shown: tuple[int, int | None] = (0, None)
        self._notebook: Any = None
        self._line: _Line | None = None
        self._bar: _Bar | None = None
        self._handlers: list[tuple[logging.StreamHandler, Any]] = []
        self._given_stream = stream is not None

    @property
    def mode(self) -> str:
        """How it draws: ``"notebook"``, ``"bar"`` (a terminal) or ``"lines"``."""
        return "notebook" if self._notebook is not None else "bar" if self._line is not None else "lines"

    def __enter__(self) -> Progress:
        client = self.client if self.client is not None else find_client()
        if client is not None:
            events.relay(client)
        self._notebook = None if self._given_stream else _CellOutput.here()
        terminal = self._notebook is None and hasattr(self.stream, "isatty") and self.stream.isatty()
        if self.interval is None:
            self.interval = 0.1 if self._notebook is not None or terminal else read_setting("progress-interval")
        if terminal:
            self._line = _Line(self.stream)
            _OPEN.append(self._line)
            # A log record goes above the bar, which tqdm then draws again below it.
            above = SimpleNamespace(write=partial(_Bar.write, file=self._line, end=""), flush=self.stream.flush)
            for handler in logging.getLogger("daskgif").handlers:
                if type(handler) is logging.StreamHandler and handler.stream is self.stream:
                    self._handlers.append((handler, handler.setStream(above)))
        self.started = self.writing = self._drawn = self.clock()
        self.unsubscribe = events.bus.subscribe(self.receive)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unsubscribe()
        with self._lock:
            self.draw(final=True)
            for handler, stream in self._handlers:
                handler.setStream(stream)
            if self._line in _OPEN:
                _OPEN.remove(self._line)

    def receive(self, msg: dict) -> None:
        """Count one message; redraw at most every *interval* seconds."""
        with self._lock:  # also keeps the drawings in order
            kind, added = msg.get("kind"), 0
            if kind == "map":
                self._runs.add(msg["run"])
                if self.total is None:
                    self.writing = self.clock()
                self.total = (self.total or 0) + msg["total"]
            elif kind == "frames" and msg.get("run") in self._runs:
                added = sum(msg["counts"].values())
                self.done += added
                self.failed += msg["counts"].get(FAILED, 0)
            else:
                return
            if self._bar is not None:
                self._bar.total = self.total
                if self.failed:  # as the plain line says it: ", 1 failed"
                    self._bar.set_postfix_str(f"{self.failed} failed", refresh=False)
                self._bar.update(added)
            else:
                self.draw()

    @property
    def rate(self) -> float | None:
        """Frames written a second since the frame count was known; ``None`` before."""
        seconds = self.clock() - self.writing
        return self.done / seconds if self.total is not None and self.done and seconds > 0 else None

    @property
    def line(self) -> str:
        """The progress as it stands, in one plain line (:func:`describe`)."""
        return describe(self.done, self.total, self.clock() - self.started, self.rate, self.failed)

    def draw(self, final: bool = False) -> None:
        """Redraw, if *interval* has passed (always when *final*; a plain line also at 100 %)."""
        if self.total is None:
            return
        if self._line is not None:  # a terminal: tqdm redraws the bar at most every interval
            if self._bar is None:
                self._bar = _Bar(total=self.total, initial=self.done, file=self._line, mininterval=self.interval,
                                 bar_format=BAR_FORMAT, unit=" frames", leave=True, dynamic_ncols=_sized(self.stream))
            if final:
                self._bar.close()
            return
        now, shown = self.clock(), (self.done, self.total)
        at_end = final or (self._notebook is None and self.done >= self.total)
        if shown == self._shown or not at_end and now - self._drawn < self.interval:
            return
        self._drawn, self._shown = now, shown
        if self._notebook is not None:
            value = min(self.done, self.total)
            self._notebook.update(f'<progress value="{value}" max="{self.total or 1}" style="width:20em">'
                                  f'</progress> <code>{value}/{self.total} frames</code>')
        else:
            self.stream.write(self.line + "\n")
            self.stream.flush()


def _sized(stream: Any) -> bool:
    """Whether the terminal says its width (a pseudo-terminal nobody sized says 0: tqdm's default width then)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


class _CellOutput:
    """An HTML output of the Jupyter cell that made it, updated in place from any thread.

    Each update carries the header of that cell, as ipywidgets' Output does: else ipykernel sends the output
    of a thread started in another cell to *that* cell.
    """

    def __init__(self, shell: Any):
        from IPython.display import HTML, display

        self.shell = shell
        self.parent = shell.get_parent() if hasattr(shell, "get_parent") else None
        self.handle = display(HTML(""), display_id=True)

    @classmethod
    def here(cls) -> _CellOutput | None:
        """One in the cell running now, when running in a Jupyter kernel; else ``None``."""
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        return cls(shell) if type(shell).__name__ == "ZMQInteractiveShell" else None

    def update(self, html: str) -> None:
        """Show *html* in place of what the display shows, in the cell that made it."""
        from IPython.display import HTML

        set_parent = getattr(self.shell, "set_thread_parent", None)  # ipykernel >= 7: a parent per thread
        tokens = set_parent(self.parent) if set_parent is not None and self.parent else None
        try:
            self.handle.update(HTML(html))
        finally:
            if tokens is not None:
                self.shell.reset_thread_parent(tokens)


def progress(stream: IO[str] | None = None, interval: float | None = None, client: Any = None) -> Progress:
    """Show the frame progress of the runs computed inside a ``with`` block (a :class:`Progress`).

    In Jupyter, one HTML ``<progress>`` line in the cell that computes; on a terminal, a tqdm bar;
    anything else (a log file, cron, CI) gets a plain line every ``daskgif.progress-interval`` seconds
    and one at the end.  Unlike Dask's bars, it counts the ``write-frame`` tasks launched at run time.

    >>> import io, daskgif
    >>> graph = daskgif.build_graph(data_file="memory://p/d.img", out="memory://p/c.gif")
    >>> with daskgif.progress(stream=io.StringIO()) as shown:
    ...     result = graph.compute(scheduler="sync")
    >>> shown.done, shown.total, shown.line.startswith("32/32 frames (100%), ")
    (32, 32, True)
    """
    return Progress(stream=stream, interval=interval, client=client)
