"""What the command line prints about a run, as text: its one-line summary and its dashboard's links."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["summary", "state_counts", "frames_written", "dashboard_lines"]

logger = logging.getLogger(__name__)


def summary(run: Any) -> str:
    """Describe a successful run in one line: the output, its size, frames in and written, time, anything unusual."""
    result = run.result
    unusual = "; ".join(f"{name}: {state_counts(per)}" for name, per in result.counts().items()
                        if set(per) != {"Success"} and not isinstance(result.states[name], Mapping))  # not frames
    size = "" if result.size is None else f" ({result.size:,} bytes)"
    return (f"Wrote {result.path}{size}: {frames_written(result)} in {run.duration:.2f} s"
            f"{f' ({unusual})' if unusual else ''}")


def state_counts(per: Mapping[str, int]) -> str:
    """Say what happened to a task's runs: its state when it ran once, else every state with its count.

    >>> state_counts({"Skipped": 1}), state_counts({"Success": 29, "Skipped": 1})
    ('Skipped', '29 Success, 1 Skipped')
    """
    return next(iter(per)) if sum(per.values()) == 1 else ", ".join(f"{n} {state}" for state, n in per.items())


def frames_written(result: Any) -> str:
    """Say how many frames the input held, went into the clip and were kept: ``31 of 32 frames written, 1 skipped``."""
    written, held, kept = result.frames_written, result.frames_in, getattr(result, "reused", 0)
    done = (" written" if not kept else ", all kept from an earlier run" if kept == written
            else f" ({written - kept} written, {kept} kept from an earlier run)")
    if held is None or held == written:
        return f"all {written} frames{done}"
    skipped = result.skipped_frames()
    indices = ", ".join(str(s.index) for s in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
    why = "" if not skipped else f" ({skipped[0].message})" if len(skipped) == 1 \
        else f" (frames {indices}; the first: {skipped[0].message})"
    return f"{written} of {held} frames{done}, {held - written} skipped{why}"


def dashboard_lines(client: Any, serves: str = "") -> list[str]:
    """The links of *client*'s dashboard and of its runs page, saying how long they *serves*; none without one."""
    from daskgif.views.dashboard import page_link

    try:
        link = client.dashboard_link
    except (KeyError, AttributeError):  # a scheduler without a dashboard (bokeh missing) has no link
        logger.debug("no dashboard on %r", client, exc_info=True)
        return []
    if not link:
        return []
    runs_page, lines = page_link(client), [f"Dashboard{f' ({serves})' if serves else ''}: {link}"]
    return [*lines, f"  daskgif runs: {runs_page}"] if runs_page else lines
