"""The record of a run's frames, and which of them a rerun may keep: pure logic, standard library only.

``map-frames`` writes ``<frames_dir>/.frames-manifest.json`` once its batches
have ended, failed ones included: the identity of the data file, the settings
that decide what a frame file holds, and one entry per frame written::

    [index, offset, length, size, blake2b of the bytes written, width, height, converted]

A rerun reads it once, lists ``frames_dir`` once, and keeps a frame when the data
file, the settings and its span are the same as when it was written and its file
is still there with the recorded size.  The kept indices travel to the
``write-frame`` batches as :class:`Ranges`: a few pairs, at any frame count.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["MANIFEST_NAME", "Entry", "Ranges", "digest", "encode", "decode", "reusable"]

#: The manifest's file name inside ``frames_dir``; a dot file, so it never looks like a frame.
MANIFEST_NAME = ".frames-manifest.json"
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

    >>> decode(b"not json") is None, decode(b'{"version": 0}') is None
    (True, True)
    """
    try:
        record = json.loads(data)
        if not isinstance(record, dict) or record.get("version") != VERSION:
            return None
        frames = {int(f[0]): Entry(int(f[0]), int(f[1]), int(f[2]), int(f[3]), str(f[4]), int(f[5]),
                                   int(f[6]), bool(f[7])) for f in record["frames"]}
        return {"data": record["data"], "settings": record["settings"], "count": int(record["count"]),
                "frames": frames}
    except (ValueError, TypeError, KeyError, IndexError):
        return None


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
