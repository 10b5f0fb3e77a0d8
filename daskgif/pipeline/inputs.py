"""Many inputs in one computation: one pipeline per input, ready for ``dask.compute(*graphs)``.

Each pipeline is the one :func:`~daskgif.build_graph` makes, so each input keeps its
own lease, manifest, states and ``RunFailed``; computed together, the frames of every
input are scheduled together and fill the cluster.  ``{name}`` in ``out``,
``data_file`` and ``frames_dir`` is the input's file name without its suffix.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from typing import Any

from daskgif import storage
from daskgif.pipeline.graph import Pipeline, make_pipeline
from daskgif.pipeline.settings import Params

__all__ = ["build_graphs", "input_name", "paths_of", "new_batch"]

#: Where each input's files go when several inputs do not say (``{suffix}``: the input's own).
DEFAULTS = {"out": "{name}.gif", "data_file": "data/{name}{suffix}", "frames_dir": "frames/{name}"}


def input_name(url: str) -> tuple[str, str]:
    """An input's name and suffix, from the last part of its path (query and fragment left out).

    >>> input_name("s3://bucket/dumps/day-1.img"), input_name("https://h/x/all-images.img?v=2"), input_name("raw")
    (('day-1', '.img'), ('all-images', '.img'), ('raw', ''))
    """
    last = url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rpartition("/")[2]
    stem, suffix = os.path.splitext(last)
    return stem or last, suffix


def paths_of(urls: Sequence[str], **templates: str | None) -> list[dict[str, str]]:
    """Each input's ``out``, ``data_file`` and ``frames_dir``; refuse two inputs that would write one path.

    A template left ``None`` takes :data:`DEFAULTS`.

    >>> paths_of(["a/x.img", "b/y.img"], out="gifs/{name}.webp")
    [{'out': 'gifs/x.webp', 'data_file': 'data/x.img', 'frames_dir': 'frames/x'}, \
{'out': 'gifs/y.webp', 'data_file': 'data/y.img', 'frames_dir': 'frames/y'}]
    >>> paths_of(["a/x.img", "b/x.img"])
    Traceback (most recent call last):
    ...
    ValueError: inputs 'a/x.img' and 'b/x.img' would both write out 'x.gif': put {name} in a folder they do not share, \
or give inputs distinct names
    """
    found: list[dict[str, str]] = []
    owner: dict[str, tuple[str, str]] = {}
    for url in urls:
        name, suffix = input_name(url)
        paths = {key: (templates.get(key) or default).format(name=name, suffix=suffix)
                 for key, default in DEFAULTS.items()}
        for key, path in paths.items():
            local = storage.local_path(path)
            where = os.path.abspath(local).rstrip("/") if local is not None else path.rstrip("/")
            if where in owner:
                other, other_key = owner[where]
                raise ValueError(f"inputs {other!r} and {url!r} would both write {other_key} {path!r}: put {{name}} "
                                 "in a folder they do not share, or give inputs distinct names")
            owner[where] = (url, key)
        found.append(paths)
    return found


def new_batch(now: float | None = None) -> str:
    """A fresh batch id: the local time to the second, and a random suffix.

    >>> import re
    >>> bool(re.fullmatch(r"\\d{8}-\\d{6}-[0-9a-f]{4}", new_batch()))
    True
    """
    return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{secrets.token_hex(2)}"


def build_graphs(urls: str | Sequence[str], out: str | None = None, data_file: str | None = None,
                 frames_dir: str | None = None, *, batch: str | None = None, **kwargs: Any) -> list[Pipeline]:
    """Build one pipeline per input; compute them together with ``dask.compute(*graphs)``.

    Parameters
    ----------
    urls : str or sequence of str
        The inputs: a URL or an fsspec pattern (``"data/*.img"``, ``"s3://bucket/dumps/*.img"``),
        or a list of them; each pattern is listed once, here, and an input given twice is taken once.
    out, data_file, frames_dir : str, optional
        Templates in which ``{name}`` is the input's file name without its suffix
        (and ``{suffix}`` its suffix). Defaults: ``{name}.gif``,
        ``data/{name}{suffix}``, ``frames/{name}``.
    batch : str, optional
        The batch's id, which every input's events, hook states (:class:`~daskgif.pipeline.graph.InputState`)
        and runs-page record carry. Default: a new one (:func:`new_batch`).
    **kwargs
        Any other parameter of :func:`~daskgif.build_graph`, for every input.

    Returns
    -------
    list of Pipeline
        In the order of the inputs (a pattern's matches sorted); ``graph.params.batch`` is the batch's id.

    Raises
    ------
    ValueError
        No input; or two inputs that would write the same path, before anything runs.

    Examples
    --------
    >>> import dask, fsspec, daskgif
    >>> sample = open(daskgif.sample_path(), "rb").read()
    >>> for day in ("mon", "tue"):
    ...     fsspec.filesystem("memory").pipe(f"/doc-many/in/{day}.img", sample)
    >>> graphs = build_graphs("memory://doc-many/in/*.img", out="memory://doc-many/{name}.gif",
    ...                       data_file="memory://doc-many/data/{name}.img", frames_dir="memory://doc-many/f/{name}")
    >>> [r.path for r in dask.compute(*graphs, scheduler="sync")]
    ['memory://doc-many/mon.gif', 'memory://doc-many/tue.gif']
    """
    inputs = storage.expand_inputs(urls, kwargs.get("storage_options"))
    if not inputs:
        raise ValueError(f"urls matched no input: {urls!r}")
    layout = paths_of(inputs, out=out, data_file=data_file, frames_dir=frames_dir)
    batch = batch or new_batch()
    return [make_pipeline(Params.from_arguments(url=url, **paths, **kwargs, batch=batch), kwargs.get("on_state", ()))
            for url, paths in zip(inputs, layout)]
