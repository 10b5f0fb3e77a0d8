"""Sphinx configuration for daskgif's documentation.

Two directives are defined here so that the pages cannot drift from the code:
``daskgif-config`` tables every key of ``daskgif/daskgif.yaml`` with its
comment and default, and ``daskgif-pipeline`` draws the pipeline with
:func:`daskgif.picture.draw_pipeline`.
"""

from __future__ import annotations

import os
import sys

import yaml
from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.ext.graphviz import Graphviz

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import daskgif  # noqa: E402

project = "daskgif"
author = "the daskgif developers"
copyright = "the daskgif developers"
version = release = daskgif.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.graphviz",
    "numpydoc",
    "sphinx_click",
]
exclude_patterns = ["_build"]
html_theme = "alabaster"
smartquotes = False  # keep `--option` and quotes as typed
html_static_path: list[str] = []
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
graphviz_output_format = "svg"
# The docs build offline: intersphinx is configured but never fetched.
intersphinx_mapping: dict = {}


def config_keys(path: str) -> list[tuple[str, str, str]]:
    """Return ``(key, default, comment)`` for every key of a daskgif YAML file.

    A key's comment is the run of ``#`` lines just above it.
    """
    with open(path) as f:
        lines = f.read().splitlines()
    defaults = yaml.safe_load("\n".join(lines))["daskgif"]
    found: list[tuple[str, str, str]] = []
    comment: list[str] = []
    after_key = False
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            # A comment covers the keys below it, up to the next comment or blank line.
            comment = [*([] if after_key else comment), text.lstrip("# ")]
            after_key = False
        elif line.startswith("  ") and ":" in text:
            key = text.split(":", 1)[0]
            default = yaml.safe_dump(defaults[key], default_flow_style=True, width=1000)
            found.append((key, default.strip().removesuffix("...").strip(), " ".join(comment)))
            after_key = True
        else:
            comment, after_key = [], False
    missing = set(defaults) - {key for key, _, _ in found}
    if missing:
        raise ValueError(f"daskgif.yaml keys not found line by line: {sorted(missing)}")
    return found


class ConfigTable(Directive):
    """``.. daskgif-config::``: a table of every ``daskgif.*`` key."""

    def run(self) -> list[nodes.Node]:
        path = os.path.join(os.path.dirname(daskgif.__file__), "daskgif.yaml")
        self.state.document.settings.record_dependencies.add(path)
        rows = [".. list-table::", "   :header-rows: 1", "   :widths: 20 25 55", "",
                "   * - key", "     - default", "     - meaning"]
        for key, default, comment in config_keys(path):
            env = "DASK_DASKGIF__" + key.upper().replace("-", "_")
            rows += [f"   * - ``daskgif.{key}``", f"     - ``{default.strip()}``",
                     f"     - {comment or '(no comment)'} Environment: ``{env}``."]
        node = nodes.container()
        self.state.nested_parse(StringList(rows, source=path), self.content_offset, node)
        return node.children


class PipelinePicture(Graphviz):
    """``.. daskgif-pipeline::``: the picture ``daskgif graph`` draws for the defaults."""

    has_content = False
    required_arguments = 0
    optional_arguments = 0

    def run(self) -> list[nodes.Node]:
        from daskgif.picture import draw_pipeline

        # force=True: draw the fresh-folder case even if the build runs where image-data.img exists.
        source = draw_pipeline(force=True).source
        self.content = StringList(source.splitlines(), source="daskgif.picture.draw_pipeline")
        self.arguments = []
        return super().run()


def escape_stars(app, ctx, lines: list[str]) -> None:
    """Escape ``*`` in click help texts (a cron expression is not emphasis)."""
    for i, line in enumerate(lines):
        if not line.lstrip().startswith(".."):
            lines[i] = line.replace("*", "\\*")


def setup(app):
    app.connect("sphinx-click-process-options", escape_stars)
    app.connect("sphinx-click-process-description", escape_stars)
    app.add_directive("daskgif-config", ConfigTable)
    app.add_directive("daskgif-pipeline", PipelinePicture)
