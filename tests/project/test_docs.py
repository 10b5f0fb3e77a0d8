"""The documentation builds without a warning and covers the configuration, the CLI and the API."""

from __future__ import annotations

import html as html_module
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import sphinx
import numpydoc
import sphinx_click

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: The widest code line that shows whole in the built pages, at the default window width.
WIDTH = 88


def text_of(page: Path) -> str:
    """Return the words of an HTML page, without tags, one space apart."""
    return " ".join(html_module.unescape(re.sub(r"<[^>]+>", " ", page.read_text())).split())


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
    assert {"index.html", "install.html", "quickstart.html", "concepts.html", "cluster.html", "configuration.html",
            "cli.html", "api.html", "performance.html", "prefect.html", "changelog.html", "parameters.html"} <= pages


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


def test_parameters_page_lists_the_parameters_of_build_graph_and_the_schedule(html):
    import inspect

    import daskgif
    from daskgif.cli import run

    page = (html / "parameters.html").read_text()
    tables = re.findall(r"<table.*?</table>", page, re.S)
    assert len(tables) == 2
    names = [[text_of_cell(row) for row in re.findall(r"<tr[^>]*>\s*<td[^>]*>(.*?)</td>", table, re.S)]
             for table in tables]
    assert names[0] == list(inspect.signature(daskgif.build_graph).parameters)
    assert set(names[1]) == {p.name for p in run.params} - set(names[0]) - {
        "workers", "threads_per_worker", "scheduler", "as_json", "report", "keep_dashboard", "fail_fast", "params_file",
        "watch", "since_start"}


def text_of_cell(cell: str) -> str:
    return " ".join(html_module.unescape(re.sub(r"<[^>]+>", " ", cell)).split())


def test_api_page_documents_the_names_users_import(html):
    import daskgif

    page = (html / "api.html").read_text()
    for name in daskgif.__all__:
        assert f'id="daskgif.{name}"' in page, name
    for name in ("core.task.Outcome", "views.pictures.draw_pipeline", "config.check", "pipeline.steps.STEPS",
                 "storage.Lease"):
        assert f'id="daskgif.{name}"' in page, name


def test_install_and_changelog_pages(html):
    install = text_of(html / "install.html")
    assert all(word in install for word in ("pip install .", "apt-get install graphviz", "s3fs", "git clone"))
    changelog = text_of(html / "changelog.html")
    assert "Unreleased" in changelog and "0.1.0" in changelog


def test_other_projects_names_link_to_their_docs(html):
    concepts = (html / "concepts.html").read_text()
    assert 'href="https://docs.dask.org/en/stable/delayed-api.html#dask.delayed.delayed"' in concepts
    cluster = (html / "cluster.html").read_text()
    assert 'href="https://distributed.dask.org/en/stable/api.html#distributed.LocalCluster"' in cluster


def test_config_table_repeats_no_sentence(html):
    page = text_of(html / "configuration.html")
    table = page[page.index("Every key"):]
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", table) if len(s.split()) > 3]
    repeated = {s for s in sentences if sentences.count(s) > 1}
    assert not repeated, repeated


def code_lines(text: str) -> Iterator[tuple[int, int, str]]:
    """Yield ``(line number, width, line)`` for every line of every literal and code block of an RST page.

    A block follows a line ending in ``::`` or a ``code-block`` directive and runs while lines are
    indented more than that line; the width is measured from the block's own indentation.
    """
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        directive = re.match(r"\s*\.\. (code-block|code|sourcecode)::", line)
        if not directive and not (line.endswith("::") and not line.lstrip().startswith(".. ")):
            i += 1
            continue
        base = len(line) - len(line.lstrip())
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or (directive and re.match(r"\s*:[\w-]+:", lines[j]))):
            j += 1
        block = []
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
            block.append((j + 1, lines[j].rstrip()))
            j += 1
        indent = min((len(text) - len(text.lstrip()) for _, text in block if text), default=0)
        yield from ((n, len(text) - indent, text) for n, text in block if text)
        i = j


def test_code_lines_are_not_cut_off():
    assert [w for _, w, _ in code_lines("Example::\n\n    ab\n      c\n\nText\n")] == [2, 3]
    long = [f"{path.name}:{n}: {width} characters: {text.strip()}"
            for path in sorted(DOCS.glob("*.rst")) for n, width, text in code_lines(path.read_text())
            if width > WIDTH]
    assert not long, f"code lines wider than {WIDTH} characters (wrap them):\n" + "\n".join(long)


def test_quickstart_shows_the_readme_commands(html):
    readme = (ROOT / "README.md").read_text()
    commands = [line.strip() for line in readme.splitlines() if line.startswith("    ") and "pip install" in line]
    assert len(commands) == 2
    page = (DOCS / "quickstart.rst").read_text()
    assert all(command in page for command in commands)


def test_quickstart_highlights_commands_and_their_output_as_a_console(html):
    page = (html / "quickstart.html").read_text()
    blocks = re.findall(r'<div class="highlight-(\w+)', page)
    assert blocks.count("python") == 1 and set(blocks) == {"console", "python"}, blocks  # Python: the API example
    console = text_of(html / "quickstart.html")
    assert "$ daskgif run Dashboard (while the run runs): http" in console


def test_index_draws_the_pipeline(html):
    page = (html / "index.html").read_text()
    assert "graphviz" in page and ".svg" in page
    svg = html_module.unescape(next(html.glob("_images/graphviz-*.svg")).read_text())
    assert "write-frame" in svg and "skip_on_upstream_skip" not in svg


def test_the_architecture_page_shows_the_layering_table():
    from layers import render

    page = (DOCS / "architecture.rst").read_text()
    assert render() in page, "docs/architecture.rst must hold tests/layers.py's render() exactly"
