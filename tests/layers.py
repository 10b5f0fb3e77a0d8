"""The architecture of daskgif as data: its parts, the arrows allowed between them, and what each may import.

``tests/project/test_layers.py`` enforces this table and ``docs/architecture.rst`` shows it
(``render()``; a test keeps the page equal to it).  Arrows point down: a part may
import the parts it lists, never one above it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent

#: part -> (what it holds, the daskgif parts it may import, the third-party packages it may import).
PARTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "face": ("__init__, cli, cliopts, runmany, dashboard (the preload name): API names and the command line",
             ("ops", "views", "pipeline", "core", "storage", "gif", "codec", "base"), ("click", "dask", "distributed")),
    "ops": ("schedules, runs in a thread, history, webhooks, the cluster to run on",
            ("pipeline", "core", "storage", "base"), ("dask", "distributed", "croniter", "dateutil")),
    "views": ("pictures, the progress line, the runs page",
              ("pipeline", "core", "storage", "gif", "base"), ("dask", "distributed", "tornado", "graphviz", "IPython", "tqdm")),
    "pipeline": ("parameters, steps and writers, the graph, frames, the result, reruns",
                 ("core", "storage", "gif", "codec", "base"), ("dask", "distributed", "yaml", "IPython", "croniter")),
    "core": ("Task, Skip, states, retry policy, tasks launching tasks, events: knows no pipeline",
             ("base",), ("dask", "distributed")),
    "storage": ("paths, files, leftovers, fetch, lock: the one fsspec seam, the only part that opens files",
                ("core", "base"), ("fsspec", "aiohttp")),
    "codec": ("codec, writers: decode and convert frames, write WebP, APNG and MP4, through Pillow (imageio)",
              ("gif", "base"), ("PIL", "imageio", "numpy")),
    "gif": ("parse, split, join, encode: GIF bytes, standard library only", ("base",), ()),
    "base": ("errors, redact (masking), config (dask.config defaults), version: used by every part", (), ("dask", "yaml")),
}

FACE = {"__init__", "__main__", "cli", "cliopts", "runmany", "dashboard"}
BASE = {"errors", "redact", "config", "version"}
CODEC = {"codec", "writers"}


def part_of(module: str) -> str:
    """The part a module (``daskgif.core.task``) belongs to.

    >>> part_of("daskgif.core.task"), part_of("daskgif.cli"), part_of("daskgif.errors"), part_of("daskgif.writers")
    ('core', 'face', 'base', 'codec')
    """
    names = module.split(".")[1:] or ["__init__"]
    if len(names) > 1 or names[0] in PARTS:
        return names[0]
    if names[0] in FACE:
        return "face"
    if names[0] in BASE:
        return "base"
    if names[0] in CODEC:
        return "codec"
    return names[0]


def module_name(path: PurePosixPath) -> str:
    """``daskgif/core/task.py`` -> ``daskgif.core.task``; a package's ``__init__`` is the package."""
    parts = list(path.with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def render() -> str:
    """The table as the reStructuredText the architecture page shows."""
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - part", "     - holds", "     - may import",
             "     - third-party"]
    for part, (holds, below, third) in PARTS.items():
        lines += [f"   * - ``{part}``", f"     - {holds}", f"     - {', '.join(below) or '(nothing)'}",
                  f"     - {', '.join(third) or '(standard library only)'}"]
    return "\n".join(lines) + "\n"


def import_nodes(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module imported, names imported from it, line)`` for every import in *path*, relative ones resolved."""
    here = module_name(PurePosixPath(path.relative_to(ROOT).as_posix()))
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


def imports(path: Path) -> set[str]:
    """Top-level names of every third-party module *path* imports, at any depth."""
    names = {module.split(".")[0] for module, _, _ in import_nodes(path)}
    return {n for n in names if n and n != "daskgif" and n not in sys.stdlib_module_names}
