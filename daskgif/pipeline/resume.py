"""Reruns that write only what is missing: read and write the frames manifest (see :mod:`daskgif.pipeline.manifest`).

``map-frames`` calls :func:`plan` before launching its batches and
:func:`record` once they have ended.  :func:`plan` costs a fixed number of
requests whatever the frame count: the data file's ``info`` and its source
record (its identity), one listing of ``frames_dir`` and one read of the manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from daskgif import storage
from daskgif.pipeline.manifest import (
    MANIFEST_NAME,
    Entry,
    Ranges,
    decode,
    encode,
    reusable,
)

__all__ = ["Plan", "plan", "record"]

logger = logging.getLogger(__name__)

# Fields of the source record that change when the data file is fetched again.
_SOURCE_FIELDS = ("url_sha256", "size", "etag", "last_modified", "fetched_at")


@dataclass
class Plan:
    """What a rerun keeps: the manifest's entries of the frames it may reuse, and what identifies this run's input."""

    identity: dict[str, Any]
    settings: dict[str, Any]
    kept: dict[int, Entry] = field(default_factory=dict)

    @property
    def reuse(self) -> Ranges:
        """The indices to skip, compact, for the ``write-frame`` batches."""
        return Ranges.of(self.kept)


def identity(data_file: str, storage_options: dict | None) -> dict[str, Any]:
    """The data file's size and version marker, and the fields of its source record that a new fetch changes."""
    source = storage.read_source(data_file, storage_options) or {}
    return {**storage.file_identity(data_file, storage_options),
            "source": {k: source.get(k) for k in _SOURCE_FIELDS}}


def plan(frames_dir: str, data_file: str, spans: Sequence[Any], settings: dict[str, Any],
         storage_options: dict | None, resume: bool = True) -> Plan:
    """List ``frames_dir`` once (removing an earlier run's surplus frames), read the manifest once, and decide."""
    listing = storage.list_sizes(frames_dir, storage_options)
    for path in storage.remove_stale_frames(frames_dir, len(spans), storage_options, names=list(listing)):
        listing.pop(path.rstrip("/").rsplit("/", 1)[-1], None)
    found = Plan(identity(data_file, storage_options), settings)
    if not resume or MANIFEST_NAME not in listing:
        return found
    path = storage.join_path(frames_dir, MANIFEST_NAME)
    try:
        with storage.open_input(path, storage_options) as f:
            manifest = decode(f.read())
    except FileNotFoundError:
        return found
    if manifest is None:
        logger.warning("Ignoring %s: not a manifest this version of daskgif wrote", path)
    count = len(spans)
    found.kept = reusable(manifest, found.identity, settings, [(s.index, s.offset, s.length) for s in spans],
                          (storage.frame_name(i, count) for i in range(count)), listing)
    if found.kept:
        logger.info("Reusing %d of %d frame(s) in %s", len(found.kept), len(spans), frames_dir)
    return found


def record(frames_dir: str, plan: Plan, count: int, entries: Iterable[Entry], storage_options: dict | None) -> None:
    """Write the manifest of the frames now in ``frames_dir``, atomically; a failure to write it is only logged."""
    path = storage.join_path(frames_dir, MANIFEST_NAME)
    try:
        storage.write_bytes(path, encode(plan.identity, plan.settings, count, entries), storage_options)
    except Exception as e:  # the frames are written: a rerun without a manifest merely writes them again
        logger.warning("Could not write the frames manifest %s: %s: %s", path, type(e).__name__, e)
