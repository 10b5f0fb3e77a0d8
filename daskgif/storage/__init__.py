"""Every byte daskgif reads or writes, through fsspec.

A path is anything fsspec opens: a local path, ``file://``, ``https://``, ``s3://``,
``memory://`` (per process), ...  Writes are atomic: data appears under its final name
only once complete, under a temporary name that says which host and process wrote it
(:func:`remove_stale_parts` clears a killed writer's).  A fetched data file has a record of
its source next to it (:func:`fetch_needed` reads it) and, while a run uses it, a lease
(:class:`Lease`).  Settings are arguments: callers read ``dask.config`` on the client.

``storage_options`` are passed to fsspec.  When the two ends of a copy need different
options, nest them under the protocol name (``{"s3": {"key": ...}, "https": {...}}``);
top-level options are used for both ends.

The package is the only part of daskgif that opens files or URLs; its modules:
``paths`` (protocols, options, frame and temporary names), ``files`` (atomic
writes, spans, appends, clean-up), ``fetch`` (downloads, and whether one is
needed), ``source`` (the record of a data file's source) and ``lock`` (the data
file's lease), and ``held`` (what an abort of the process removes).  Everything is imported
from ``daskgif.storage``.
"""

from __future__ import annotations

from daskgif.errors import LockHeld
from daskgif.storage.fetch import fetch_file, fetch_needed
from daskgif.storage.files import (
    APPENDABLE,
    SpanReader,
    append_bytes,
    atomic_write,
    exists,
    file_identity,
    list_sizes,
    open_input,
    read_span,
    remove_stale_frames,
    remove_stale_parts,
    write_bytes,
)
from daskgif.storage.guard import check_target, file_kind, read_small
from daskgif.storage.held import abort_writes
from daskgif.storage.lock import Lease
from daskgif.storage.paths import (
    FRAME_NAME,
    UPLOAD_NAME,
    expand_inputs,
    frame_name,
    is_glob,
    join_path,
    list_inputs,
    local_path,
    part_name,
    part_owner,
)
from daskgif.storage.source import (
    read_source,
    source_path,
    source_record,
    url_digest,
    write_source,
)

__all__ = [
    "APPENDABLE", "FRAME_NAME", "expand_inputs", "is_glob", "LockHeld", "Lease", "SpanReader", "UPLOAD_NAME",
    "abort_writes", "append_bytes",
    "atomic_write", "check_target", "file_kind", "read_small", "exists", "fetch_file", "fetch_needed", "file_identity", "frame_name",
    "join_path", "list_inputs", "list_sizes", "local_path", "open_input", "part_name", "part_owner",
    "read_source", "read_span", "remove_stale_frames", "remove_stale_parts",
    "source_path", "source_record", "url_digest", "write_bytes", "write_source",
]
