"""A picture of a finished run: the pipeline of :mod:`daskgif.views.pictures`, coloured by what happened.

:func:`draw_run` takes a :class:`~daskgif.pipeline.result.Result`, the JSON of ``daskgif run
--json`` or a history record (:func:`load_run` reads them from a file) and draws
each step with its state, attempts and time, the frame counts per state, and the
failed and skipped frames by index and message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from daskgif.views.pictures import (
    FILE,
    TASK,
    import_graphviz,
    mapped_task,
    new_picture,
    picture_file,
    save_picture,
    wire,
)

if TYPE_CHECKING:
    import graphviz

__all__ = ["draw_run", "load_run", "LOOKS"]


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


def summarize(task_states: Any) -> Summary:
    """Return the :class:`Summary` of one entry of a run's ``states``, in any of the forms runs are kept in.

    A :class:`~daskgif.core.state.State` or its dict (``--json``), a
    :class:`~daskgif.core.state.MappedStates` or its dict (``counts``, ``records``),
    or counts only (history lines: ``{"Success": 1}``).

    >>> summarize({"Success": 30, "Failed": 1}).line()
    '30 Success, 1 Failed'
    >>> summarize({"name": "fetch", "state": "Failed", "attempts": 3, "message": "FetchError: 503"}).line()
    'Failed after 3 attempts'
    """
    from daskgif.core.state import MappedStates, State

    if isinstance(task_states, Mapping) and "state" in task_states:
        task_states = State.from_dict(task_states)
    if isinstance(task_states, State):
        return Summary({task_states.state: 1}, task_states.attempts or None, task_states.duration, task_states.message)
    if isinstance(task_states, MappedStates):
        counts, records = dict(task_states.counts), list(task_states.values())
    elif isinstance(task_states, Mapping) and "counts" in task_states:
        counts = dict(task_states["counts"])
        records = [State.from_dict(r) for r in (task_states.get("records") or {}).values()]
    elif isinstance(task_states, Mapping):
        counts, records = {str(k): int(n) for k, n in task_states.items()}, []
    else:
        raise ValueError(f"a task's states must be a State, MappedStates or a mapping, got {task_states!r}"[:300])
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

    *run* is a :class:`~daskgif.pipeline.result.Result`, ``Result.to_dict()``, a line of
    ``daskgif run --json``, a history record, or a webhook body (its ``result``
    holds the full states).
    """
    from daskgif.core.state import State, describe, first_failure, iter_states

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
        full = [State.from_dict(task_states) for task_states in run["states"].values()
                if isinstance(task_states, Mapping) and "state" in task_states]
        records = [State.from_dict(r) for task_states in run["states"].values() if isinstance(task_states, Mapping)
                   for r in (task_states.get("records") or {}).values() if isinstance(r, Mapping)]
        root = first_failure([*records, *full])
        message = "" if root is None else describe(root)
    return {"ok": bool(run.get("ok")), "states": run["states"], "message": message,
            "title": " · ".join(b for b in bits if b), "cancelled": bool(run.get("cancelled")), "files": files}


def draw_run(run: Any, filename: str | None = None, format: str | None = None, *,  # noqa: A002 - dask's name
             max_named: int = 3) -> graphviz.Digraph:
    """Draw a finished run: the pipeline's steps coloured by state, with attempts and counts.

    Success is green, Skipped amber, Failed red; a step that did not run is grey
    and dashed.  A mapped step (``write-frame``) shows its counts per state and
    names its failed, then skipped, items (index and message), up to *max_named*,
    then how many more.  Steps follow ``daskgif.pipeline.steps.STEPS``, as in
    :func:`draw_pipeline`.

    Parameters
    ----------
    run : Result or dict
        A :class:`~daskgif.pipeline.result.Result` (``RunFailed(...).result`` too),
        ``Result.to_dict()``, a ``daskgif run --json`` line, a history record
        (``--history``; it keeps counts only, so no item is named), or a
        webhook body.
    filename : str, optional
        Also save the picture there (any fsspec path), as dask's ``visualize`` does.
    format : {"svg", "png", "pdf", "dot"}, optional
        The file's format; default: its suffix says, else PNG.
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
    states = {name: summarize(task_states) for name, task_states in view["states"].items()}
    outcome = "cancelled" if view.get("cancelled") else "succeeded" if view["ok"] else "FAILED"
    title = view["title"]
    heading = f"daskgif run {outcome}" + (f" ({title})" if title else "")
    label = heading + (f"\n{wrap(view['message'], 90, 2)}" if view["message"] and not view["ok"] else "")
    dot = new_picture(graphviz, label=label, labelloc="t", fontsize="13")
    files = view["files"]

    def look(state: str, base: dict = TASK) -> dict[str, str]:
        return {**base, **LOOKS.get(state, {"fillcolor": "#e8eaf6", "color": "#5c6bc0"})}

    def draw_step(step: Any) -> str:
        summary = states.get(step.name)
        text = "not run" if summary is None else summary.line()
        if summary is not None and summary.state == "Failed" and summary.message:
            text += "\n" + wrap(summary.message)
        dot.node(step.name, f"{step.name}\n{text}", **look("not run" if summary is None else summary.state))
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
    if filename is not None:
        save_picture(dot, picture_file(filename, format), getattr(run, "storage_options", None))
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

    if source.lstrip().startswith("{"):
        text, where = source, "the JSON given"
    else:
        from daskgif import storage

        with storage.open_input(source, storage_options) as f:
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

    try:
        json.loads(line)
    except ValueError:
        return False
    return True
