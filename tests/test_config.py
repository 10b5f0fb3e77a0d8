"""Configuration follows Dask's conventions: defaults under ``daskgif`` in ``dask.config``,
visible to ``dask config get``, overridable by ``DASK_DASKGIF__...``, validated with messages
that name the key and where the value came from."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from daskgif import config

ROOT = Path(__file__).resolve().parent.parent
YAML = ROOT / "daskgif" / "daskgif.yaml"


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run *code* in a fresh interpreter that imports this checkout of daskgif."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=environ)


@pytest.mark.parametrize("imports", ["import daskgif, dask", "import dask, daskgif", "import daskgif.gif.parse, distributed"])
def test_defaults_are_in_dask_config_whatever_is_imported_first(imports):
    done = python(f"{imports}; import dask; print(dask.config.get('daskgif.on-error'), "
                  "dask.config.get('daskgif.dashboard.max-runs'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["raise", "20"]


def test_environment_variables_override_the_defaults():
    done = python("import daskgif, dask; print(dask.config.get('daskgif.on-error'))", DASK_DASKGIF__ON_ERROR="skip")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "skip"


def test_importing_a_pure_module_loads_neither_dask_nor_yaml():
    done = python("import sys, daskgif.gif, daskgif.gif.split, daskgif.gif.join; "
                  "print(sorted(m for m in ('dask', 'yaml', 'fsspec', 'imageio') if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_bad_value_from_the_environment_names_key_and_variable():
    done = python("from daskgif import config\nconfig.check('on-error', config.get('on-error'), ('raise', 'skip'))",
                  DASK_DASKGIF__ON_ERROR="explode")
    assert done.returncode == 1
    assert ("ValueError: daskgif.on-error must be 'raise' or 'skip', got 'explode' (set by DASK_DASKGIF__ON_ERROR)"
            in done.stderr)


def test_check_names_the_key_but_not_an_unset_variable(monkeypatch):
    monkeypatch.delenv("DASK_DASKGIF__VALIDATE", raising=False)
    assert config.check("validate", "structure", ("decode", "structure")) == "structure"
    with pytest.raises(ValueError, match=r"^daskgif.validate must be 'decode' or 'structure', got 'both'$"):
        config.check("validate", "both", ("decode", "structure"))
    with pytest.raises(TypeError, match="expected="):
        config.check("max-pixels", 0, lambda v: v > 0)


def test_defaults_match_the_documented_limits():
    from PIL import Image

    defaults = yaml.safe_load(YAML.read_text())["daskgif"]
    assert defaults["max-pixels"] == Image.MAX_IMAGE_PIXELS  # Pillow warns above it
    assert {"simplecache", "filecache", "blockcache"} <= set(defaults["allowed-protocols"])
    assert defaults["dashboard"] == {"max-runs": 20, "max-frame-records": 10000}
    assert defaults["validate"] in ("decode", "structure")


def test_every_setting_a_message_names_exists():
    """A message or docstring that names ``daskgif.some-setting`` names one that daskgif.yaml defines."""
    defaults = yaml.safe_load(YAML.read_text())
    named = {name for path in (ROOT / "daskgif").rglob("*.py")
             for name in re.findall(r"daskgif\.[a-z][a-z0-9.-]*[a-z0-9]", path.read_text()) if "-" in name}
    assert named  # the pattern still finds them: daskgif.lock-timeout, daskgif.max-bytes, ...

    def defined(name: str) -> bool:
        node = defaults
        for key in name.split("."):
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    assert sorted(name for name in named if not defined(name)) == []


def test_pyproject_installs_the_yaml_where_dask_reads_config():
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files == {"etc/dask": ["daskgif/daskgif.yaml"]}


def test_dask_config_cli_shows_the_packaged_defaults(tmp_path):
    # What an installed daskgif gives: daskgif.yaml in a folder that Dask reads, and
    # `dask config get`, which never imports daskgif, shows it.
    shutil.copy(YAML, tmp_path / "daskgif.yaml")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "dask", "config", "get", "daskgif.on-error"], capture_output=True,
                          text=True, timeout=60, env={**env, "DASK_CONFIG": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "raise"


@pytest.mark.slow
def test_the_wheel_puts_the_yaml_in_etc_dask(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("daskgif-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        data = [n for n in names if n.endswith(".data/data/etc/dask/daskgif.yaml")]
        assert data and z.read(data[0]) == YAML.read_bytes()
