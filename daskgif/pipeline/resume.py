"""Reruns that write only what is missing: the frames manifest, and which frames a rerun may keep.

``map-frames`` writes ``<frames_dir>/.frames-manifest.json`` once its batches
have ended, failed ones included: the identity of the data file, the settings
that decide what a frame file holds, and one entry per frame written::

    [index, offset, length, size, blake2b of the bytes written, width, height, converted]

A rerun reads it once, lists ``frames_dir`` once, and keeps a frame when the data
file, the settings and its span are the same as when it was written and its file
is still there with the recorded size.  The kept indices travel to the
``write-frame`` batches as :class:`Ranges`: a few pairs, at any frame count.

``map-frames`` calls :func:`plan` before launching its batches and :func:`record`
once they have ended.  :func:`plan` costs a fixed number of requests whatever the
frame count: the data file's ``info`` and its source record (its identity), one
listing of ``frames_dir`` and one read of the manifest.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

#: The manifest's file name inside ``frames_dir``; a dot file, so it never looks like a frame.
MANIFEST_NAME = ".frames-manifest.json"
#: The largest manifest read: its entries are about 100 bytes a frame.
MANIFEST_LIMIT = 256 * 2**20
VERSION = 1


class Entry(NamedTuple):
    """One frame as the manifest records it."""

    index: int
    offset: int
    length: int
    size: int
    digest: str
    width: int
    height: int
    converted: bool


def digest(data: bytes) -> str:
    """The content hash of a frame's bytes: BLAKE2b, 128 bits, in hex.

    >>> digest(b"GIF89a")
    'a4ebc5f66162847b445559c37cdf009b'
    """
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class Ranges:
    """A set of indices kept as sorted ``(start, stop)`` pairs: compact when the indices are mostly consecutive.

    >>> r = Ranges.of([0, 1, 2, 5, 7, 8])
    >>> r.pairs, 2 in r, 3 in r, 8 in r, len(r)
    (((0, 3), (5, 6), (7, 9)), True, False, True, 6)
    >>> Ranges.of([]).pairs
    ()
    """

    __slots__ = ("pairs", "_starts")

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()):
        self.pairs = tuple((int(a), int(b)) for a, b in pairs)
        self._starts = [a for a, _ in self.pairs]

    @classmethod
    def of(cls, indices: Iterable[int]) -> Ranges:
        """The ranges holding exactly *indices*."""
        pairs: list[list[int]] = []
        for i in sorted(set(indices)):
            if pairs and pairs[-1][1] == i:
                pairs[-1][1] = i + 1
            else:
                pairs.append([i, i + 1])
        return cls((a, b) for a, b in pairs)

    def __contains__(self, index: object) -> bool:
        at = bisect.bisect_right(self._starts, index) - 1  # type: ignore[call-overload]
        return at >= 0 and index < self.pairs[at][1]  # type: ignore[operator]

    def __len__(self) -> int:
        return sum(b - a for a, b in self.pairs)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __iter__(self):  # type: ignore[no-untyped-def]
        for a, b in self.pairs:
            yield from range(a, b)

    def __reduce__(self) -> Any:
        return (Ranges, (self.pairs,))

    def __repr__(self) -> str:
        return f"Ranges({len(self)} indices in {len(self.pairs)} ranges)"


def encode(identity: Mapping[str, Any], settings: Mapping[str, Any], count: int,
           entries: Iterable[Entry]) -> bytes:
    """The manifest's bytes.

    >>> data = encode({"size": 9}, {"validate": "decode"}, 2, [Entry(1, 5, 4, 4, "ab", 1, 1, False)])
    >>> decode(data)["frames"]
    {1: Entry(index=1, offset=5, length=4, size=4, digest='ab', width=1, height=1, converted=False)}
    """
    record = {"version": VERSION, "data": dict(identity), "settings": dict(settings), "count": count,
              "frames": [list(e) for e in sorted(entries)]}
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def decode(data: bytes) -> dict[str, Any] | None:
    """The manifest in *data*, entries by index; ``None`` if it is not one this version wrote.

    An entry that does not parse is left out (its frame is written again); the
    manifest is only a hint of which frames to try (see
    :class:`daskgif.pipeline.steps.KeptFrames`, which proves each one).

    >>> decode(b"not json") is None, decode(b'{"version": 0}') is None, decode(b"\\xff\\xfe") is None
    (True, True, True)
    >>> m = decode(b'{"version": 1, "data": {}, "settings": {}, "count": 3, "frames": '
    ...            b'[[0, 6, 4, 4, "h", 1, 1, false], [1, "x"], "junk", [2, -6, 4, 4, "h", 1, 1, false]]}')
    >>> sorted(m["frames"])
    [0]
    """
    try:
        record = json.loads(data)
        if not isinstance(record, dict) or record.get("version") != VERSION or not isinstance(record["frames"], list):
            return None
        manifest = {"data": record["data"], "settings": record["settings"], "count": int(record["count"]), "frames": {}}
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return None
    for found in record["frames"]:
        entry = _entry(found)
        if entry is not None:
            manifest["frames"][entry.index] = entry
    return manifest


def _entry(found: Any) -> Entry | None:
    """One manifest entry, or ``None`` when it is not a well-formed one."""
    if not isinstance(found, list) or len(found) != len(Entry._fields):
        return None
    numbers = found[:4] + found[5:7]
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63 for n in numbers) \
            or not isinstance(found[4], str) or not isinstance(found[7], bool):
        return None
    return Entry(*found[:4], found[4], found[5], found[6], found[7])


def reusable(manifest: Mapping[str, Any] | None, identity: Mapping[str, Any], settings: Mapping[str, Any],
             spans: Sequence[tuple[int, int, int]], names: Iterable[str], sizes: Mapping[str, int]
             ) -> dict[int, Entry]:
    """The entries of the frames a rerun may keep as they are, by index.

    A frame is kept when the manifest was written for the same data file
    (*identity*), the same *settings* and the same frame count, its span
    ``(index, offset, length)`` is the one recorded, and its file (``names[index]``)
    is listed in *sizes* with the recorded size.

    >>> e = Entry(0, 6, 4, 4, "h", 1, 1, False)
    >>> m = decode(encode({"size": 10}, {}, 2, [e, e._replace(index=1, offset=14)]))
    >>> sorted(reusable(m, {"size": 10}, {}, [(0, 6, 4), (1, 14, 4)], ["f0", "f1"], {"f0": 4, "f1": 4}))
    [0, 1]
    >>> sorted(reusable(m, {"size": 10}, {}, [(0, 6, 4), (1, 14, 4)], ["f0", "f1"], {"f1": 4}))
    [1]
    >>> reusable(m, {"size": 11}, {}, [(0, 6, 4), (1, 14, 4)], ["f0", "f1"], {"f0": 4, "f1": 4})
    {}
    """
    if manifest is None or manifest["data"] != dict(identity) or manifest["settings"] != dict(settings) \
            or manifest["count"] != len(spans):
        return {}
    kept = {}
    for (index, offset, length), name in zip(spans, names):
        entry = manifest["frames"].get(index)
        if entry is not None and (entry.offset, entry.length) == (offset, length) \
                and sizes.get(name) == entry.size:
            kept[index] = entry
    return kept



import logging
from dataclasses import dataclass, field

from daskgif import storage

__all__ = ["MANIFEST_NAME", "Entry", "Ranges", "RerunPlan", "digest", "encode", "decode", "reusable", "plan", "record"]

logger = logging.getLogger(__name__)

# Fields of the source record that change when the data file is fetched again.
_SOURCE_FIELDS = ("url_sha256", "size", "etag", "last_modified", "fetched_at")


@dataclass
class RerunPlan:
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
         storage_options: dict | None, resume: bool = True) -> RerunPlan:
    """List ``frames_dir`` once (removing an earlier run's surplus frames), read the manifest once, and decide."""
    listing = storage.list_sizes(frames_dir, storage_options)
    for path in storage.remove_stale_frames(frames_dir, len(spans), storage_options, names=list(listing)):
        listing.pop(path.rstrip("/").rsplit("/", 1)[-1], None)
    found = RerunPlan(identity(data_file, storage_options), settings)
    if not resume or MANIFEST_NAME not in listing:
        return found
    path = storage.join_path(frames_dir, MANIFEST_NAME)
    try:
        manifest = decode(storage.read_small(path, storage_options, limit=MANIFEST_LIMIT))
    except FileNotFoundError:
        return found
    except OSError as e:  # a fifo, a link, a device, a huge file: never trusted, never waited on
        logger.warning("Ignoring the frames manifest %s (%s): every frame is written again", path, e.strerror or e)
        return found
    if manifest is None:
        logger.warning("Ignoring %s: not a manifest this version of daskgif wrote", path)
    count = len(spans)
    found.kept = reusable(manifest, found.identity, settings, [(s.index, s.offset, s.length) for s in spans],
                          (storage.frame_name(i, count) for i in range(count)), listing)
    if found.kept:
        logger.info("Reusing %d of %d frame(s) in %s", len(found.kept), len(spans), frames_dir)
    return found


def record(frames_dir: str, plan: RerunPlan, count: int, entries: Iterable[Entry],
           storage_options: dict | None) -> None:
    """Write the manifest of the frames now in ``frames_dir``, atomically; a failure to write it is only logged."""
    path = storage.join_path(frames_dir, MANIFEST_NAME)
    try:
        storage.write_bytes(path, encode(plan.identity, plan.settings, count, entries), storage_options)
    except Exception as e:  # the frames are written: a rerun without a manifest merely writes them again
        logger.warning("Could not write the frames manifest %s: %s: %s", path, type(e).__name__, e)
