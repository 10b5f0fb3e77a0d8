"""The layers of daskgif, enforced from the table in ``tests/layers.py``.

Every import between daskgif's modules (inside functions too) must follow an arrow
the table allows; no two modules may import each other through any path (no
circle); no module imports another module's ``_private`` name; every third-party
import is one its part allows; only ``storage`` opens files.  As click's
``test_imports`` does, the pure parts are also imported in a fresh interpreter to
see what they load.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from layers import PARTS, ROOT, import_nodes, imports, module_name, part_of

PACKAGE = ROOT / "daskgif"
MODULES = {module_name(PurePosixPath(p.relative_to(ROOT).as_posix())): p for p in sorted(PACKAGE.rglob("*.py"))}


def internal_imports(path: Path) -> set[str]:
    """The daskgif modules *path* imports (``from daskgif.core import task`` counts as ``daskgif.core.task``)."""
    found = set()
    for module, names, _ in import_nodes(path):
        if module != "daskgif" and not module.startswith("daskgif."):
            continue
        submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
        found |= set(submodules) or {module}
        if submodules and len(submodules) < len(names):
            found.add(module)
    return {m for m in found if m in MODULES}


def test_every_part_is_in_the_table():
    unknown = {name: part_of(name) for name in MODULES if part_of(name) not in PARTS}
    assert not unknown, f"modules outside every part of tests/layers.py: {unknown}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_follow_the_arrows(name):
    part = part_of(name)
    allowed = {part, *PARTS[part][1]}
    wrong = {other for other in internal_imports(MODULES[name])
             if part_of(other) not in allowed and other != "daskgif"}
    assert not wrong, f"{name} ({part}) imports {sorted(wrong)}: not an arrow of tests/layers.py"
    if part != "face":
        assert "daskgif" not in internal_imports(MODULES[name]), f"{name} imports the package face"
    extra = imports(MODULES[name]) - set(PARTS[part][2])
    assert not extra, f"{name} ({part}) imports {sorted(extra)}, outside its part"


def test_no_import_circle():
    graph = {name: internal_imports(path) - {name} for name, path in MODULES.items()}
    # a package importing its own modules to list them is not a circle through them
    graph = {n: {m for m in deps if not (MODULES[n].name == "__init__.py" and m.startswith(n + "."))}
             for n, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_private_name_crosses_modules():
    crossing = []
    for name, path in MODULES.items():
        for module, names, line in import_nodes(path):
            if module.startswith("daskgif") and module != name:
                crossing += [f"{name}:{line} imports {n} from {module}" for n in names
                             if n.startswith("_") and not n.startswith("__")]
    assert not crossing, crossing


def opens(path: Path) -> bool:
    """Whether *path* calls the builtin ``open``."""
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
               for node in ast.walk(ast.parse(path.read_text(), str(path))))


def test_only_storage_opens_files_and_urls():
    # Besides storage, only config reads a file of its own: the packaged YAML.
    for name, path in MODULES.items():
        if part_of(name) != "storage" and name != "daskgif.config":
            assert "fsspec" not in imports(path) and not opens(path), f"{name} opens files itself"


def test_no_two_classes_share_a_name():
    """A class name says what it is: two unrelated classes ``Run`` were a ``ScheduledRun`` and a ``RunRecord``."""
    where: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(name)
    assert {cls: modules for cls, modules in where.items() if len(modules) > 1} == {}


def test_no_module_is_long():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 450}
    assert not long, f"modules over 450 lines: {long}"


def test_the_pure_parts_load_nothing_heavy():
    pure = [name for name in MODULES if part_of(name) == "gif"] + ["daskgif.errors", "daskgif.redact"]
    code = ("import sys; import " + ", ".join(pure) + "; "
            "print(sorted(m for m in ('dask', 'distributed', 'fsspec', 'imageio', 'PIL', 'yaml') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
