"""What ``pip install .`` gives works: every imported third-party package is declared,
every declared one is used, and type checkers see the names ``daskgif`` exports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from layers import imports  # one scan of a module's imports, shared with the layering test

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "daskgif"

#: Import name -> distribution name, where they differ.
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "dateutil": "python-dateutil"}

#: Imported only where the environment already has it, and why it is not a dependency.
PROVIDED = {"IPython": "views/progress.py draws in a notebook only inside a Jupyter kernel, which has IPython"}

#: Declared but never imported by daskgif, and why.
USED_WITHOUT_IMPORT = {
    "bokeh": "distributed serves the dashboard whose link daskgif prints only when bokeh is installed",
}


def third_party_imports() -> dict[str, set[str]]:
    """Return ``{top-level import name: {modules importing it}}`` for every module of daskgif."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in imports(path):
            found.setdefault(name, set()).add(path.name)
    return found


def declared() -> set[str]:
    """Return the names of the runtime dependencies in ``pyproject.toml``, normalised."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in deps}


def test_every_imported_package_is_declared():
    missing = {name: sorted(where) for name, where in third_party_imports().items()
               if DISTRIBUTION.get(name, name).lower() not in declared() and name not in PROVIDED}
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_every_declared_package_is_used():
    imported = {DISTRIBUTION.get(name, name).lower() for name in third_party_imports()}
    unused = declared() - imported - set(USED_WITHOUT_IMPORT)
    assert not unused, f"declared in [project] dependencies but never imported: {sorted(unused)}"


@pytest.mark.slow
def test_lazy_exports_are_typed(tmp_path):
    import mypy  # in the test extra
    script = tmp_path / "user.py"
    script.write_text("import daskgif\n"
                      "reveal_type(daskgif.build_graph)\n"
                      "reveal_type(daskgif.Result)\n"
                      "reveal_type(daskgif.RunFailed)\n"
                      "daskgif.no_such_name\n")
    done = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental",
                           "--cache-dir", str(tmp_path / ".mypy_cache"), str(script)],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env={"PATH": "", "PYTHONPATH": "", "MYPYPATH": str(ROOT)})
    revealed = re.findall(r'Revealed type is "(.*)"', done.stdout)
    assert len(revealed) == 3, done.stdout + done.stderr
    assert not any(t == "Any" for t in revealed), revealed
    assert "def (" in revealed[0] and "daskgif.pipeline.result.Result" in revealed[1], revealed
    assert 'Module has no attribute "no_such_name"' in done.stdout


def test_dask_config_get_shows_the_defaults_after_an_editable_install(tmp_path):
    """``pip install -e .`` installs no data file in ``{sys.prefix}/etc/dask``, but it records the entry
    points of ``pyproject.toml``: the ``dask`` command loads daskgif through ``dask_cli``, and with it the
    defaults.  Here that metadata is written as pip writes it, ahead of the environment's own."""
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists():
        pytest.skip("the dask command is not installed")
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert entry_points["dask_cli"] == {"daskgif": "daskgif.cli:main"}
    info = tmp_path / "site" / "daskgif-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: daskgif\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in found.items())
        for group, found in entry_points.items()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
           "DASK_CONFIG": str(tmp_path / "no-user-config")}
    shown = subprocess.run([str(dask), "config", "get", "daskgif"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=120)
    assert shown.returncode == 0 and "on-error: raise" in shown.stdout.splitlines(), shown.stderr
    assert "validate: decode" in shown.stdout.splitlines()
    command = subprocess.run([str(dask), "daskgif", "--help"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=120)
    assert command.returncode == 0 and command.stdout.startswith("Usage: dask daskgif [OPTIONS] COMMAND"), \
        command.stderr
