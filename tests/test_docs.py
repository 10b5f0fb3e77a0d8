"""The documentation builds without a warning and covers the configuration, the CLI and the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("sphinx")
pytest.importorskip("numpydoc")
pytest.importorskip("sphinx_click")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    """The HTML docs, built as CI builds them: ``python -m sphinx -W -b html docs <out>``."""
    out = tmp_path_factory.mktemp("html")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(out / ".doctrees"), str(DOCS), str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr + done.stdout
    return out


def test_builds_without_warnings(html):
    pages = {p.name for p in html.glob("*.html")}
    assert {"index.html", "quickstart.html", "concepts.html", "cluster.html", "configuration.html", "cli.html",
            "api.html", "performance.html", "prefect.html"} <= pages


def test_every_config_key_is_documented(html):
    with open(ROOT / "daskgif" / "daskgif.yaml") as f:
        keys = yaml.safe_load(f)["daskgif"]
    page = (html / "configuration.html").read_text()
    missing = [key for key in keys if f"daskgif.{key}" not in page]
    assert not missing, f"daskgif.yaml keys missing from configuration.html: {missing}"
    assert "(no comment)" not in page, "every daskgif.yaml key needs a comment above it"


def test_cli_page_lists_every_command_and_option(html):
    import click

    from daskgif.cli import main

    page = (html / "cli.html").read_text()
    for name, command in main.commands.items():
        assert f'id="daskgif-{name}"' in page, name
        for param in command.params:
            if isinstance(param, click.Argument):
                assert f'id="cmdoption-daskgif-{name}-arg-{param.name.upper()}"' in page, f"{name} {param.name}"
                continue
            for opt in param.opts:
                assert f'id="cmdoption-daskgif-{name}-{opt.lstrip("-")}"' in page, f"{name} {opt}"


def test_api_page_documents_the_public_names(html):
    page = (html / "api.html").read_text()
    for name in ("graph.build_graph", "result.Result", "tasks.Task", "tasks.task", "tasks.Skip", "tasks.State",
                 "tasks.Outcome", "picture.draw_pipeline", "errors.RunFailed"):
        assert f'id="daskgif.{name}"' in page, name


def test_quickstart_shows_the_readme_commands(html):
    readme = (ROOT / "README.md").read_text()
    commands = [line.strip() for line in readme.splitlines() if line.startswith("    ") and "pip install" in line]
    assert len(commands) == 2
    page = (DOCS / "quickstart.rst").read_text()
    assert all(command in page for command in commands)


def test_index_draws_the_pipeline(html):
    page = (html / "index.html").read_text()
    assert "graphviz" in page and ".svg" in page
