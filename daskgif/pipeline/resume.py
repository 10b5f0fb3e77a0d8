"""Reruns that write only what is missing: the frames manifest, and which frames a rerun may keep.

``map-frames`` writes ``<frames_dir>/.frames-manifest.json`` once its batches have ended, failed ones
included: the identity of the data file, the settings that decide what a frame file holds, and one
:class:`~daskgif.pipeline.frames.Frame` per frame written, as
``[index, offset, length, size, blake2b of the bytes written, width, height, converted]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from daskgif import storage
from daskgif.gif.spans import Span
from daskgif.pipeline.frames import Frame, FramePaths

__all__ = ["MANIFEST_NAME", "digest", "encode", "decode", "reusable", "plan", "record"]

logger = logging.getLogger(__name__)

#: The manifest's file name inside ``frames_dir``; a dot file, so it never looks like a frame.
MANIFEST_NAME = ".frames-manifest.json"
#: The largest manifest read: its entries are about 100 bytes a frame.
MANIFEST_LIMIT = 256 * 2**20
VERSION = 1
# Fields of the source record that change when the data file is fetched again.
SOURCE_FIELDS = ("url_sha256", "size", "etag", "last_modified", "fetched_at")


def digest(data: bytes) -> str:
    """The content hash of a frame's bytes: BLAKE2b, 128 bits, in hex.

    >>> digest(b"GIF89a")
    'a4ebc5f66162847b445559c37cdf009b'
    """
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def encode(head: Mapping[str, Any], frames: Iterable[Frame]) -> bytes:
    """The manifest's bytes: *head* (``data``, ``settings``, ``count``) and the *frames*, in order.

    >>> data = encode({"data": {"size": 9}, "settings": {}, "count": 2}, [Frame(1, 5, 4, 4, "ab", 1, 1, False)])
    >>> decode(data)["frames"]
    {1: Frame(index=1, offset=5, length=4, size=4, digest='ab', width=1, height=1, converted=False)}
    """
    record = {"version": VERSION, **head, "frames": [list(f) for f in frames]}
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def decode(data: bytes) -> dict[str, Any] | None:
    """The manifest in *data*, frames by index; ``None`` if it is not one this version wrote.  An entry that
    does not parse is left out (its frame is written again): the manifest is only a hint of which frames to try.

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
        head = {"data": record["data"], "settings": record["settings"], "count": int(record["count"])}
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return None
    frames = (Frame(*found) for found in record["frames"] if well_formed(found))
    return {**head, "frames": {frame.index: frame for frame in frames}}


def well_formed(found: Any) -> bool:
    """Whether *found* is a manifest entry: eight fields, the numbers in range.

    >>> well_formed([0, 6, 4, 4, "h", 1, 1, False]), well_formed([0, 6, 4, 4, "h", 1, True, False])
    (True, False)
    """
    if not isinstance(found, list) or len(found) != len(Frame._fields):
        return False
    numbers = found[:4] + found[5:7]
    return all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63 for n in numbers) \
        and isinstance(found[4], str) and isinstance(found[7], bool)


def reusable(manifest: Mapping[str, Any] | None, head: Mapping[str, Any], spans: Sequence[Span],
             sizes: Mapping[str, int]) -> list[int]:
    """The frames a rerun may keep as they are: recorded for this *head*, with the same span, listed in
    *sizes* (by file name) with the recorded size.

    >>> head = {"data": {"size": 10}, "settings": {}, "count": 2}
    >>> f = Frame(0, 6, 4, 4, "h", 1, 1, False)
    >>> m, spans = decode(encode(head, [f, f._replace(index=1, offset=14)])), [Span(0, 6, 4), Span(1, 14, 4)]
    >>> reusable(m, head, spans, {"frame_00.gif": 4, "frame_01.gif": 4}), reusable(m, head, spans, {"frame_01.gif": 4})
    ([0, 1], [1])
    >>> reusable(m, {**head, "data": {"size": 11}}, spans, {"frame_00.gif": 4, "frame_01.gif": 4})
    []
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
    """This run's manifest head (see :func:`encode`) and the frames it may keep, each still to be proven
    (:class:`daskgif.pipeline.steps.KeptFrames`).  A fixed number of requests at any frame count: the data
    file's ``info`` and source record, one listing of ``frames_dir`` (removing an earlier run's surplus
    frames) and one read of the manifest."""
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
        storage.write_bytes(path, encode(head, frames), storage_options)
    except Exception as e:  # the frames are written: a rerun without a manifest merely writes them again
        logger.warning("Could not write the frames manifest %s: %s: %s", path, type(e).__name__, e)
