"""Execute ``examples/image-etl.ipynb`` in a fresh temporary folder and save it with its outputs.

The notebook is committed with its outputs so that it reads well on a code
host. Regenerate them after changing the notebook or the code it shows::

    python examples/run_notebook.py            # execute, then rewrite the notebook in place
    python examples/run_notebook.py --check    # exit 1 if the committed outputs are stale

``tests/features/test_notebook.py`` runs the same check. Outputs are compared in a
normal form (see :func:`normal_form`) that ignores what changes from run to run:
numbers (times, ports, addresses), the progress bar's intermediate states,
pictures, and log lines that are not daskgif's own.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().with_name("image-etl.ipynb")
TEXT = ("text/plain", "text/html", "text/markdown")


def execute(path: Path = NOTEBOOK, workdir: Path | None = None, timeout: int = 180) -> nbformat.NotebookNode:
    """Execute a copy of the notebook at *path* with *workdir* (default a new temporary folder) as its cwd."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="daskgif-notebook-") as tmp:
        folder = Path(tmp) if workdir is None else Path(workdir)
        if path.parent.resolve() != folder.resolve():
            shutil.copy(path, folder / path.name)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(folder)}})
        client.execute()
    return tidy(nb)


def tidy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Merge each cell's stream outputs by name and keep only what a terminal would show of them."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs: list[Any] = []
        for out in cell.outputs:
            if out.output_type == "stream" and outputs and outputs[-1].output_type == "stream" \
                    and outputs[-1].name == out.name:
                outputs[-1].text += out.text
            else:
                outputs.append(out)
        for out in outputs:
            if out.output_type == "stream":
                out.text = last_frame(out.text)
        cell.outputs = outputs
    return nb


def normalize(text: str) -> str:
    """Blank out what changes between runs: ids and tokens, addresses, then every number.

    >>> normalize("duration=0.53s at 0x7f3a9c, http://127.0.0.1:40211/status")
    'duration=0.0s at 0x?, http://0.0.0.0:0/status'
    >>> normalize("Client-c0e67039-ecd7-11f1-8883-02fc00000001 ran fetch-51191f8178ea5142f4ad86829d52796c")
    'Client-? ran fetch-?'
    >>> normalize("LocalCluster(e4a1c05b, 'tcp://127.0.0.1:36123', workers=2)")
    "LocalCluster(?, 'tcp://0.0.0.0:0', workers=0)"
    >>> normalize('<iframe\\n  src="x"\\n  referrerpolicy="strict-origin-when-cross-origin"\\n></iframe>')
    '<iframe\\n  src="x"\\n></iframe>'

    """
    text = re.sub(r"\b[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", "?", text)  # uuid: client, scheduler
    text = re.sub(r"\b[0-9a-f]{32}\b", "?", text)  # dask tokens: run ids, task keys
    text = re.sub(r"\b[0-9a-f]{8}\b", "?", text)  # a cluster's name
    text = re.sub(r"(dask-scratch-space/worker-)\w+", r"\1?", text)  # a worker's folder
    text = re.sub(r"0x[0-9a-fA-F]+", "0x?", text)
    text = re.sub(r"\n\s*referrerpolicy=\"[^\"]*\"", "", text)  # newer IPython adds it to IFrame's HTML
    return re.sub(r"\d+", "0", text)


def last_frame(text: str) -> str:
    r"""Keep what a terminal shows of text redrawn with carriage returns; drop ANSI escapes.

    >>> last_frame("[#   ] 25%\r[####] 100%\x1b[2K\r\ndone\n")
    '[####] 100%\ndone\n'
    """
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    lines = []
    for line in text.split("\n"):
        drawn = [piece for piece in line.split("\r") if piece]
        lines.append(drawn[-1] if drawn else "")
    return "\n".join(lines)


def normal_form(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """Return the cells and the stable part of their outputs, for comparing two executions."""
    cells: list[dict[str, Any]] = []
    for cell in nb.cells:
        entry: dict[str, Any] = {"type": cell.cell_type, "source": cell.source}
        if cell.cell_type == "code":
            streams = {"stdout": "", "stderr": ""}
            rich = []
            for out in cell.outputs:
                if out.output_type == "stream":
                    streams[out.name] += out.text
                elif out.output_type in ("execute_result", "display_data"):
                    rich.append((out.output_type, {mime: normalize(value) if mime in TEXT else "(picture)"
                                                   for mime, value in sorted(out.data.items())}))
                else:
                    rich.append((out.output_type, out.get("ename"), out.get("evalue")))
            # Other libraries' log lines (cluster start and shutdown) come and go: keep daskgif's own.
            # Tasks that may run in either order log in either order: compare the lines sorted.
            own = sorted(line for line in streams["stderr"].splitlines() if " daskgif" in line)
            entry["stdout"] = normalize(last_frame(streams["stdout"]))
            entry["stderr"] = normalize("\n".join(own))
            entry["outputs"] = rich
        cells.append(entry)
    return cells


def stale_cells(committed: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> list[str]:
    """Describe every cell whose committed outputs differ from a fresh execution's."""
    old, new = normal_form(committed), normal_form(fresh)
    if len(old) != len(new):
        return [f"{len(old)} cells committed, {len(new)} executed"]
    return [f"cell {i}: committed {a!r}\n        executed  {b!r}" for i, (a, b) in enumerate(zip(old, new)) if a != b]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed outputs; write nothing")
    args = parser.parse_args(argv)
    fresh = execute()
    if args.check:
        stale = stale_cells(nbformat.read(NOTEBOOK, as_version=4), fresh)
        for line in stale:
            print(line, file=sys.stderr)
        if stale:
            print(f"{NOTEBOOK.name} is stale: run python examples/run_notebook.py", file=sys.stderr)
        return 1 if stale else 0
    nbformat.write(fresh, NOTEBOOK)
    print(f"Wrote {NOTEBOOK} with fresh outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
