"""Sphinx configuration for daskgif's documentation.

Three directives are defined here so that the pages cannot drift from the code:
``daskgif-config`` tables every key of ``daskgif/daskgif.yaml`` with its
comment and default, ``daskgif-parameters`` the table of run parameters of
:mod:`daskgif.pipeline.parameters`, and ``daskgif-pipeline`` draws the pipeline
with :func:`daskgif.views.pictures.draw_pipeline`.

The build is offline (CI has no network), so intersphinx cannot fetch Dask's
inventories. Instead, references to Dask, distributed, fsspec and Python names
resolve through :data:`EXTERNAL` to their pages, ``:dask:``-style roles link to
whole pages, and a reference to a name that resolves nowhere is a warning.
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
    "sphinx.ext.extlinks",
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
# 88 characters of code fit the body at the default width of a 1200-pixel window.
html_theme_options = {"page_width": "1100px", "sidebar_width": "220px", "code_font_size": "0.8em"}

DASK = "https://docs.dask.org/en/stable/"
DISTRIBUTED = "https://distributed.dask.org/en/stable/"
FSSPEC = "https://filesystem-spec.readthedocs.io/en/latest/"
PYTHON = "https://docs.python.org/3/"

#: ``:dask:`configuration.html``` and the like: a page of each project's docs.
extlinks = {
    "dask": (DASK + "%s", "%s"),
    "distributed": (DISTRIBUTED + "%s", "%s"),
    "fsspec": (FSSPEC + "%s", "%s"),
    "python": (PYTHON + "%s", "%s"),
}

#: Where the names of other projects that the pages and docstrings refer to are documented.
EXTERNAL = {
    "dask.delayed": DASK + "delayed-api.html#dask.delayed.delayed",
    "dask.delayed.Delayed": DASK + "delayed-api.html#dask.delayed.Delayed",
    "dask.config": DASK + "configuration.html",
    "dask.config.set": DASK + "configuration.html#dask.config.set",
    "dask.config.get": DASK + "configuration.html#dask.config.get",
    "dask.config.update_defaults": DASK + "configuration.html#dask.config.update_defaults",
    "dask.compute": DASK + "api.html#dask.compute",
    "dask.utils.key_split": DASK + "api.html#dask.utils.key_split",
    "dask.diagnostics.ProgressBar": DASK + "diagnostics-local.html#dask.diagnostics.ProgressBar",
    "distributed.progress": DISTRIBUTED + "api.html#distributed.progress",
    "distributed.Client": DISTRIBUTED + "api.html#distributed.Client",
    "distributed.LocalCluster": DISTRIBUTED + "api.html#distributed.LocalCluster",
    "distributed.performance_report": DISTRIBUTED + "api.html#distributed.performance_report",
    "distributed.worker_client": DISTRIBUTED + "api.html#distributed.worker_client",
    "distributed.Worker.log_event": DISTRIBUTED + "api.html#distributed.Worker.log_event",
    "distributed.Client.subscribe_topic": DISTRIBUTED + "api.html#distributed.Client.subscribe_topic",
    "distributed.Semaphore": DISTRIBUTED + "api.html#distributed.Semaphore",
    "fsspec.open": FSSPEC + "api.html#fsspec.open",
    "fsspec.core.url_to_fs": FSSPEC + "api.html#fsspec.core.url_to_fs",
    "os.replace": PYTHON + "library/os.html#os.replace",
    "logging": PYTHON + "library/logging.html",
    "logging.Logger": PYTHON + "library/logging.html#logging.Logger",
}


def config_keys(path: str) -> list[tuple[str, str, str]]:
    """Return ``(key, default, comment)`` for every key of a daskgif YAML file.

    A key's comment is the run of ``#`` lines just above it; a nested key is
    dotted (``dashboard.max-runs``), and a section with a comment is listed too.
    """
    with open(path) as f:
        lines = f.read().splitlines()
    defaults = yaml.safe_load("\n".join(lines))["daskgif"]
    found: list[tuple[str, str, str]] = []
    comment: list[str] = []
    parents: list[str] = []  # the enclosing keys of a nested section, e.g. ["dashboard"]
    for line in lines:
        text = line.strip()
        depth = (len(line) - len(line.lstrip(" "))) // 2 - 1
        if text.startswith("#"):
            comment.append(text.lstrip("# "))
        elif depth >= 0 and ":" in text:
            key, value = (part.strip() for part in text.split(":", 1))
            parents = [*parents[:depth], key]
            value_of = defaults
            for part in parents:
                value_of = value_of[part]
            if value or not isinstance(value_of, dict):
                default = yaml.safe_dump(value_of, default_flow_style=True, width=1000)
                found.append((".".join(parents), default.strip().removesuffix("...").strip(), " ".join(comment)))
            elif comment:
                found.append((".".join(parents), "(a section)", " ".join(comment)))
            comment = []
        else:
            comment = []
    flat = set()
    stack = [("", defaults)]
    while stack:
        prefix, section = stack.pop()
        for name, value in section.items():
            if isinstance(value, dict):
                stack.append((f"{prefix}{name}.", value))
            else:
                flat.add(prefix + name)
    missing = flat - {key for key, _, _ in found}
    if missing:
        raise ValueError(f"daskgif.yaml keys not found line by line: {sorted(missing)}")
    return found


class ConfigTable(Directive):
    """``.. daskgif-config::``: a table of every ``daskgif.*`` key."""

    def run(self) -> list[nodes.Node]:
        from daskgif.config import env_name

        path = os.path.join(os.path.dirname(daskgif.__file__), "daskgif.yaml")
        self.state.document.settings.record_dependencies.add(path)
        rows = [".. list-table::", "   :header-rows: 1", "   :widths: 36 16 48", "",
                "   * - key and environment variable", "     - default", "     - meaning"]
        for key, default, comment in config_keys(path):
            # Long lists break after each comma instead of running off the page.
            shown = default.strip().replace(", ", ",\u200b ")
            if default == "(a section)":
                rows += [f"   * - ``daskgif.{key}``", "     - (a section)", f"     - {comment}"]
                continue
            rows += [f"   * - | ``daskgif.{key}``", f"       | ``{env_name(key)}``",
                     f"     - ``{shown}``", f"     - {comment or '(no comment)'}"]
        node = nodes.container()
        self.state.nested_parse(StringList(rows, source=path), self.content_offset, node)
        return node.children


class ParameterTable(Directive):
    """``.. daskgif-parameters:: run`` (or ``schedule``): the table of parameters, as declared in code."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from daskgif.pipeline import parameters

        table = {"run": parameters.PARAMETERS, "schedule": parameters.SCHEDULE}[self.arguments[0]]
        self.state.document.settings.record_dependencies.add(parameters.__file__)
        node = nodes.container()
        self.state.nested_parse(StringList(parameters.render(table).splitlines(), source=parameters.__file__),
                                self.content_offset, node)
        return node.children


class PipelinePicture(Graphviz):
    """``.. daskgif-pipeline::``: the picture ``daskgif graph`` draws for the defaults."""

    has_content = False
    required_arguments = 0
    optional_arguments = 0

    def run(self) -> list[nodes.Node]:
        from daskgif.views.pictures import draw_pipeline

        # force=True: draw the fresh-folder case even if the build runs where image-data.img exists.
        source = draw_pipeline(force=True).source
        self.content = StringList(source.splitlines(), source="daskgif.views.pictures.draw_pipeline")
        self.arguments = []
        return super().run()


def escape_stars(app, ctx, lines: list[str]) -> None:
    """Escape ``*`` and ``\\`` in click help texts (a cron expression is not emphasis, ``'\\r\\n'`` keeps its
    backslashes); directives and literals are left as they are."""
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("..") and "``" not in line:
            lines[i] = line.replace("\\", "\\\\").replace("*", "\\*")


def resolve_reference(app, env, node, contnode):
    """Resolve a reference to another project's name, or to a daskgif name by its short alias.

    ``daskgif.build_graph`` resolves to ``daskgif.build_graph`` when the API page
    documents it under the name users import. A ``dask.``, ``distributed.``, ``fsspec.``
    or ``daskgif.`` name that resolves nowhere is a warning, so ``-W`` catches it.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    if target in EXTERNAL:
        ref = nodes.reference("", "", internal=False, refuri=EXTERNAL[target], reftitle=target)
        ref += contnode
        return ref
    domain = env.get_domain("py")
    if target.startswith("daskgif.") and target.count(".") >= 2:
        alias = "daskgif." + ".".join(target.split(".")[2:])  # daskgif.Task.run -> daskgif.Task.run
        if alias in domain.objects:
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], alias, node, contnode)
    if target.split(".")[0] in ("dask", "distributed", "fsspec", "daskgif"):
        from sphinx.util import logging

        logging.getLogger(__name__).warning("reference to %s resolves nowhere: document it or add it to "
                                            "EXTERNAL in docs/conf.py", target, location=node)
    return None


def setup(app):
    app.connect("missing-reference", resolve_reference)
    app.connect("sphinx-click-process-options", escape_stars)
    app.connect("sphinx-click-process-description", escape_stars)
    app.add_directive("daskgif-config", ConfigTable)
    app.add_directive("daskgif-parameters", ParameterTable)
    app.add_directive("daskgif-pipeline", PipelinePicture)
