"""The layers of daskgif, enforced: which third-party packages each module may import.

Pure byte logic uses the standard library only; only ``io`` talks to fsspec; only the
graph layer (graph building, the fan-out, events, running, connecting, the runs page)
imports distributed.  Imports inside functions count too.  As click's ``test_imports``
does, the pure modules are also imported in a fresh interpreter to see what they load.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "daskgif"

PURE = {"gif", "split", "join", "encode", "state", "retry", "errors", "redact", "sample", "__main__", "manifest"}
ALLOWED: dict[str, set[str]] = {
    **{name: set() for name in PURE},
    "__init__": set(),  # registers the defaults once Dask is imported, never importing Dask itself
    "config": {"dask", "yaml"},
    "validate": {"PIL"},
    "convert": {"PIL", "imageio", "numpy"},
    "io": {"fsspec", "aiohttp"},
    "result": {"IPython"},
    "tasks": {"dask", "distributed"},  # dask.delayed, and secede/rejoin while a retry waits on a worker
    "fanout": {"dask", "distributed"},
    "limits": {"distributed"},  # distributed.Semaphore on a worker
    "timeouts": {"distributed"},  # secede/rejoin while an attempt is waited for on a worker
    "resume": set(),  # I/O through daskgif.io only
    "events": {"distributed"},
    "graph": {"dask", "distributed"},
    "runner": {"distributed"},
    "cluster": {"dask", "distributed"},
    "dashboard": {"dask", "distributed", "tornado"},
    "progressbar": {"IPython"},
    "schedule": {"croniter", "dateutil"},
    "history": set(),
    "notify": set(),
    "picture": {"graphviz"},
    "runpicture": {"graphviz"},
    "params": {"yaml"},
    "cli": {"click", "distributed"},
}


def imports(path: Path) -> set[str]:
    """Top-level names of every third-party module *path* imports, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names}
    return {n for n in found if n != "daskgif" and n not in sys.stdlib_module_names}


MODULES = sorted(PACKAGE.rglob("*.py"))


def layer(path: Path) -> str:
    """A module's layer: its name, or its subpackage's (every module of ``daskgif.io`` is ``io``)."""
    return path.stem if path.parent == PACKAGE else path.parent.name


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_what_its_layer_allows(path):
    assert layer(path) in ALLOWED, f"daskgif/{path.name} is new: give it a layer in ALLOWED"
    extra = imports(path) - ALLOWED[layer(path)]
    assert not extra, f"daskgif/{path.relative_to(PACKAGE)} imports {sorted(extra)}, outside its layer"


def opens(path: Path) -> bool:
    """Whether *path* calls the builtin ``open``."""
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
               for node in ast.walk(ast.parse(path.read_text(), str(path))))


def test_only_io_opens_files_and_urls():
    # Besides io, only config reads a file of its own: the packaged YAML.
    own_files = {"io", "config"}
    for path in MODULES:
        if layer(path) not in own_files:
            assert "fsspec" not in imports(path) and not opens(path), f"daskgif/{path.name} opens files itself"


def test_the_pure_modules_load_nothing_heavy():
    code = ("import sys; import " + ", ".join(f"daskgif.{m}" for m in sorted(PURE - {"__main__"})) + "; "
            "print(sorted(m for m in ('dask', 'distributed', 'fsspec', 'imageio', 'PIL', 'yaml') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
