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

ROOT = Path(__file__).resolve().parents[2]
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


def flat_keys(node: dict, prefix: str = "") -> set[str]:
    """``daskgif.yaml``'s keys, dotted below sections (``dashboard.max-runs``); a mapping setting is one key."""
    keys = set()
    for key, value in node.items():
        if isinstance(value, dict) and key not in ("task-timeout", "limits"):
            keys |= flat_keys(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_every_key_of_daskgif_yaml_is_checked_when_read():
    from daskgif.pipeline.parameters import PARAMETERS
    from daskgif.pipeline.settings import SETTINGS

    checked = set(SETTINGS) | {p.config for p in PARAMETERS if p.config is not None}
    keys = flat_keys(yaml.safe_load(YAML.read_text())["daskgif"])
    assert sorted(keys - checked) == [] and sorted(checked - keys) == []


@pytest.mark.parametrize("key, value, message", [
    ("fetch-timeout", 0, "daskgif.fetch-timeout must be a positive number of seconds, got 0"),
    ("lock-timeout", -1, "daskgif.lock-timeout must be a positive number of seconds, got -1"),
    ("task-timeout", -1, "daskgif.task-timeout must be null, a positive number of seconds or a mapping of fetch, "
                         "split, write-frame, combine to them, got -1"),
    ("stop-timeout", -1, "daskgif.stop-timeout must be a non-negative number of seconds, got -1"),
    ("connect-timeout", 0, "daskgif.connect-timeout must be a positive number of seconds, got 0"),
    ("notify-timeout", 0, "daskgif.notify-timeout must be a positive number of seconds, got 0"),
    ("notify-retries", -1, "daskgif.notify-retries must be a non-negative integer, got -1"),
    ("notify-retry-delay", "1s", "daskgif.notify-retry-delay must be a non-negative number of seconds, got '1s'"),
    ("dashboard.max-runs", 0, "daskgif.dashboard.max-runs must be a positive integer, got 0"),
    ("dashboard.max-frame-records", True, "daskgif.dashboard.max-frame-records must be a positive integer, got True"),
])
def test_a_bad_setting_names_its_key_and_range_wherever_it_is_read(key, value, message):
    import dask

    from daskgif import build_graph
    from daskgif.pipeline.settings import read_setting

    with dask.config.set({f"daskgif.{key}": value}):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            read_setting(key)
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):  # and before any run starts
            build_graph()


def test_the_runs_page_checks_its_bounds():
    import dask

    from daskgif.views.dashboard import RunsPlugin

    with dask.config.set({"daskgif.dashboard.max-runs": 0}):
        with pytest.raises(ValueError, match="^daskgif.dashboard.max-runs must be a positive integer, got 0$"):
            RunsPlugin()
    assert RunsPlugin().runs.max_runs == 20


@pytest.mark.parametrize("where", ["environment", "yaml"])
def test_one_number_sets_every_task_timeout(tmp_path, where):
    """The documented one-number form, read by Dask before daskgif registers its per-step defaults."""
    env = {"DASK_DASKGIF__TASK_TIMEOUT": "2"}
    if where == "yaml":
        (tmp_path / "daskgif.yaml").write_text("daskgif:\n  task-timeout: 2\n  limits: {fetch: 3}\n")
        env = {"DASK_CONFIG": str(tmp_path)}
    done = python("import daskgif\np = daskgif.build_graph().params\nprint(p.task_timeout, p.limits)", **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("{'fetch': 2, 'split': 2, 'write-frame': 2, 'combine': 2} "
                                   f"{{'fetch': {3 if where == 'yaml' else None}, 'write': None}}")
    done = python("import daskgif\nprint(daskgif.build_graph().params.task_timeout)",
                  DASK_DASKGIF__TASK_TIMEOUT__WRITE_FRAME="5")
    assert done.stdout.strip() == "{'fetch': None, 'split': None, 'write-frame': 5, 'combine': None}"


def daskgif_run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "daskgif", "run", "--scheduler", "threads", *args], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("variable, value, message", [
    ("DASK_DASKGIF__FETCH_TIMEOUT", "0", "daskgif.fetch-timeout must be a positive number of seconds, got 0"),
    ("DASK_DASKGIF__NOTIFY_RETRIES", "-1", "daskgif.notify-retries must be a non-negative integer, got -1"),
    ("DASK_DASKGIF__STOP_TIMEOUT", "-1", "daskgif.stop-timeout must be a non-negative number of seconds, got -1"),
])
def test_run_refuses_a_bad_setting_before_it_fetches(tmp_path, http_server, variable, value, message):
    http_server.serve("/data.img", b"GIF89a" * 100)
    url = http_server.stall("/data.img", seconds=3600)  # a fetch with no timeout would wait on it for ever
    done = daskgif_run("--url", url, "--notify", http_server.url("/hook"), cwd=tmp_path, **{variable: value})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == f"Error: {message} (set by {variable})"
    assert http_server.requests == [] and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_stopped_run_retries_nothing():
    from daskgif import build_graph
    from daskgif.errors import Cancelled
    from daskgif.pipeline import cancel

    params = build_graph(retries=3, retry_delay=0).params
    attempts = []

    def down(_):
        attempts.append(1)
        if len(attempts) == 2:  # a stop while the second attempt runs
            cancel.cancel(params.run)
        raise ConnectionError("connection reset")  # transient: retried while the run goes on

    try:
        with pytest.raises(Cancelled, match="was cancelled"):  # stopped, not failed
            params.task(down, "fetch").run(None)
    finally:
        cancel.forget(params.run)
    assert len(attempts) == 2
