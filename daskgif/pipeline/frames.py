"""The frames a run writes, compact at any frame count, and the manifest that lets a rerun keep them.

``map-frames`` writes ``<frames_dir>/.frames-manifest.json`` once its batches have ended, failed ones
included: the identity of the data file, the settings that decide what a frame file holds, and one
:class:`Frame` per frame written, as
``[index, offset, length, size, blake2b of the bytes written, width, height, converted]``.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import math
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from daskgif import storage
from daskgif.gif.spans import Span, Spans

__all__ = ["Frame", "FrameTable", "FramePaths", "MANIFEST_NAME", "digest", "encode", "decode", "reusable", "plan",
           "record"]

logger = logging.getLogger(__name__)

#: The manifest's file name inside ``frames_dir``; a dot file, so it never looks like a frame.
MANIFEST_NAME = ".frames-manifest.json"
#: The largest manifest read: its entries are about 100 bytes a frame.
MANIFEST_LIMIT = 256 * 2**20
VERSION = 1
# Fields of the source record that change when the data file is fetched again.
SOURCE_FIELDS = ("url_sha256", "size", "etag", "last_modified", "fetched_at")


class Frame(NamedTuple):
    """A frame written to ``frames_dir``, as the manifest records it: never its bytes."""

    index: int
    offset: int  # its span of the data file: the frame file's bytes, unless converted
    length: int
    size: int  # bytes written, and their hash (:func:`digest`): what a rerun checks
    digest: str
    width: int
    height: int
    converted: bool  # converted to GIF: read from its own file


class FrameTable(Spans):
    """What ``write-frame`` batches return and ``combine`` reads: per item a :class:`Frame`, or ``None`` when it
    was not written, compact: 64 bytes a frame (the digest as two integers).

    >>> t = FrameTable.of([Frame(0, 0, 35, 35, "ab" * 16, 4, 2, False), None])
    >>> t[0].digest == "ab" * 16, t[1], t.size, list(t.indices())
    (True, None, (4, 2), [0])
    """

    STRIDE = 8
    __slots__ = ()

    def pack(self, frame: Frame | None) -> Iterable[int]:
        if frame is None:
            return (0, 0, 0, -1, 0, 0, 0, 0)  # width -1: not written
        return (*frame[1:4], *frame[5:], *array("q", bytes.fromhex(frame.digest)))

    def unpack(self, index: int, values: Sequence[int]) -> Frame | None:
        offset, length, size, width, height, converted, *digest = values
        if width < 0:
            return None
        return Frame(index, offset, length, size, array("q", digest).tobytes().hex(), width, height, bool(converted))

    @property
    def size(self) -> tuple[int, int]:
        """The largest width and height of the written frames."""
        return max(self.values[3::self.STRIDE], default=0), max(self.values[4::self.STRIDE], default=0)

    def written(self) -> Iterator[Frame]:
        """Every written frame, in order."""
        return (frame for frame in self if frame is not None)

    def indices(self) -> Iterator[int]:
        """The index of every written frame, in order."""
        return (self.first + i for i, width in enumerate(self.values[3::self.STRIDE]) if width >= 0)


class FramePaths(Sequence):
    """Frame files of a run, compact: ``frames_dir/frame_NN.gif`` for indices kept as ``(start, stop)`` ranges.

    ``Result.frames`` (the frames a run wrote) and the frames a rerun may keep: a few pairs at any frame count.
    As JSON it is the list of paths up to :data:`JSON_LIST_LIMIT` characters, else a count and the name pattern.

    >>> paths = FramePaths.of("out", 12, [0, 1, 2, 5, 7, 8])
    >>> paths.pairs, paths.holds(2), paths.holds(3), len(paths), paths[3], paths[-1]
    (((0, 3), (5, 6), (7, 9)), True, False, 6, 'out/frame_05.gif', 'out/frame_08.gif')
    >>> FramePaths("f", 200_000).to_json()["pattern"]
    'f/frame_{index:06d}.gif'
    """

    JSON_LIST_LIMIT = 16_000
    __slots__ = ("frames_dir", "count", "pairs", "ends")

    def __init__(self, frames_dir: str, count: int, pairs: Iterable[tuple[int, int]] | None = None):
        self.frames_dir, self.count = frames_dir, count
        self.pairs = ((0, count),) if pairs is None else tuple((int(a), int(b)) for a, b in pairs)
        self.ends = list(itertools.accumulate(b - a for a, b in self.pairs))  # the position after each range

    @classmethod
    def of(cls, frames_dir: str, count: int, indices: Iterable[int]) -> FramePaths:
        """The files of the frames *indices* (increasing) of a run of *count* frames."""
        pairs: list[list[int]] = []
        for i in indices:
            if pairs and pairs[-1][1] == i:
                pairs[-1][1] = i + 1
            else:
                pairs.append([i, i + 1])
        return cls(frames_dir, count, pairs)

    def holds(self, index: int) -> bool:
        """Whether frame *index* is one of these."""
        at = bisect.bisect_right(self.pairs, (index, math.inf)) - 1
        return at >= 0 and index < self.pairs[at][1]

    def path(self, index: int) -> str:
        """The file of frame *index*."""
        return storage.join_path(self.frames_dir, storage.frame_name(index, self.count))

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        at = bisect.bisect_right(self.ends, i)
        return self.path(self.pairs[at][1] - (self.ends[at] - i))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (FramePaths, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<FramePaths: {len(self)} of {self.count} frames in {self.frames_dir!r}>"

    def to_json(self) -> list[str] | dict[str, Any]:
        """The paths as a list, or when that is long ``{"count", "pattern", "first", "last", ...}``."""
        if not len(self) or len(self) * (len(self[-1]) + 4) <= self.JSON_LIST_LIMIT:
            return list(self)
        found = {"count": len(self), "pattern": storage.join_path(self.frames_dir, storage.frame_pattern(self.count)),
                 "first": self[0], "last": self[-1]}
        if len(self) < self.count:
            edges = (0, *itertools.chain(*self.pairs), self.count)  # the gaps: edges[0:2], edges[2:4], ...
            missing = itertools.chain(*map(range, edges[::2], edges[1::2]))
            found["not_written"] = {"count": self.count - len(self), "first": list(itertools.islice(missing, 100))}
        return found


def digest(data: bytes) -> str:
    """The content hash of a frame's bytes: BLAKE2b, 128 bits, in hex.

    >>> digest(b"GIF89a")
    'a4ebc5f66162847b445559c37cdf009b'
    """
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def encode(head: Mapping[str, Any], frames: Iterable[Frame], per: int = 4096) -> Iterator[bytes]:
    """The manifest's bytes, *per* frames at a time: *head* (``data``, ``settings``, ``count``) and the *frames*,
    in order (a million frames' JSON is 100 MB, and as Python lists several times that: never held whole).

    >>> head, frame = {"data": {"size": 9}, "settings": {}, "count": 2}, Frame(1, 5, 4, 4, "ab", 1, 1, False)
    >>> decode(b"".join(encode(head, [frame])))["frames"]
    {1: Frame(index=1, offset=5, length=4, size=4, digest='ab', width=1, height=1, converted=False)}
    """
    record = json.dumps({"version": VERSION, **head, "frames": []}, separators=(",", ":"), sort_keys=True)
    before, after = record.split('"frames":[]', 1)  # a key of the top level: inside a string its quotes are escaped
    frames, sep = iter(frames), ""
    yield f'{before}"frames":['.encode()
    while chunk := [list(frame) for frame in itertools.islice(frames, per)]:
        yield (sep + json.dumps(chunk, separators=(",", ":"))[1:-1]).encode()
        sep = ","
    yield f"]{after}".encode()


def decode(data: bytes) -> dict[str, Any] | None:
    """The manifest in *data*, frames by index; ``None`` if it is not one this version wrote.  An entry that
    does not parse is left out (its frame is written again): the manifest is only a hint of which frames to try.

    >>> decode(b"not json") is None, decode(b'{"version": 0}') is None, decode(b"\\xff\\xfe") is None
    (True, True, True)
    >>> m = decode(b'{"version": 1, "data": {}, "settings": {}, "count": 4, "frames": [[0, 6, 4, 4, "h", 1, 1, false], '
    ...            b'[1, "x"], "junk", [2, -6, 4, 4, "h", 1, 1, false], [3, 6, 4, 4, "h", 1, true, false]]}')
    >>> sorted(m["frames"])
    [0]
    """
    try:
        record = json.loads(data)
        if not isinstance(record, dict) or record.get("version") != VERSION or not isinstance(record["frames"], list):
            return None
        head = {"data": record["data"], "settings": record["settings"], "count": int(record["count"])}
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return None
    frames = (Frame(*found) for found in record["frames"] if isinstance(found, list) and len(found) == 8
              and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63 for n in found[:4] + found[5:7])
              and isinstance(found[4], str) and isinstance(found[7], bool))
    return {**head, "frames": {frame.index: frame for frame in frames}}


def reusable(manifest: Mapping[str, Any] | None, head: Mapping[str, Any], spans: Sequence[Span],
             sizes: Mapping[str, int]) -> list[int]:
    """The frames a rerun may keep: recorded for this *head* with the same span, and listed in *sizes* (by file
    name) with the recorded size.

    >>> head, f = {"data": {"size": 10}, "settings": {}, "count": 2}, Frame(0, 6, 4, 4, "h", 1, 1, False)
    >>> m, spans = decode(b"".join(encode(head, [f, f._replace(index=1, offset=14)]))), [Span(0, 6, 4), Span(1, 14, 4)]
    >>> reusable(m, head, spans, {"frame_01.gif": 4}), reusable(m, {**head, "count": 3}, spans, {"frame_01.gif": 4})
    ([1], [])
    """
    if manifest is None or any(manifest[key] != value for key, value in head.items()):
        return []
    kept = []
    for index, offset, length in spans:
        frame = manifest["frames"].get(index)
        if frame is not None and (frame.offset, frame.length) == (offset, length) \
                and sizes.get(storage.frame_name(index, len(spans))) == frame.size:
            kept.append(index)
    return kept


def plan(frames_dir: str, data_file: str, spans: Sequence[Span], settings: Mapping[str, Any],
         storage_options: dict | None, resume: bool = True) -> tuple[dict[str, Any], FramePaths]:
    """This run's manifest head (see :func:`encode`) and the frames it may keep, still to be proven: the data
    file's ``info`` and source record, one listing of ``frames_dir`` (surplus frames removed), one manifest read."""
    listing = storage.list_sizes(frames_dir, storage_options)
    for path in storage.remove_stale_frames(frames_dir, len(spans), storage_options, names=list(listing)):
        listing.pop(path.rstrip("/").rsplit("/", 1)[-1], None)
    source = storage.read_source(data_file, storage_options) or {}
    identity = {**storage.file_identity(data_file, storage_options),
                "source": {k: source.get(k) for k in SOURCE_FIELDS}}
    head = {"data": identity, "settings": dict(settings), "count": len(spans)}
    manifest, path = None, storage.join_path(frames_dir, MANIFEST_NAME)
    if resume and MANIFEST_NAME in listing:
        try:
            manifest = decode(storage.read_small(path, storage_options, limit=MANIFEST_LIMIT))
        except FileNotFoundError:
            pass
        except OSError as e:  # a fifo, a link, a device, a huge file: never trusted, never waited on
            logger.warning("Ignoring the frames manifest %s (%s): every frame is written again", path, e.strerror or e)
        else:
            if manifest is None:
                logger.warning("Ignoring %s: not a manifest this version of daskgif wrote", path)
    kept = reusable(manifest, head, spans, listing)
    if kept:
        logger.info("Reusing %d of %d frame(s) in %s", len(kept), len(spans), frames_dir)
    return head, FramePaths.of(frames_dir, len(spans), kept)


def record(frames_dir: str, head: Mapping[str, Any], frames: Iterable[Frame], storage_options: dict | None) -> None:
    """Write the manifest of the frames now in ``frames_dir``, atomically; a failure to write it is only logged."""
    path = storage.join_path(frames_dir, MANIFEST_NAME)
    try:
        with storage.atomic_write(path, storage_options) as f:
            for piece in encode(head, frames):
                f.write(piece)
    except Exception as e:  # the frames are written: a rerun without a manifest merely writes them again
        logger.warning("Could not write the frames manifest %s: %s: %s", path, type(e).__name__, e)
