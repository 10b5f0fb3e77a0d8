"""Every byte daskgif reads or writes, through fsspec: the only part of daskgif that opens files or URLs.

A path is anything fsspec opens: a local path, ``file://``, ``https://``, ``s3://``,
``memory://`` (per process), ...  ``storage_options`` are passed to fsspec; when the two
ends of a copy need different options, nest them under the protocol name
(``{"s3": {"key": ...}, "https": {...}}``), top-level ones are used for both.  Settings
are arguments: callers read ``dask.config`` on the client.

Modules: ``paths`` (protocols, options, frame and temporary names), ``files`` (atomic
writes, spans, appends, small files, what an abort removes), ``fetch`` (downloads, the
record of their source, and whether to fetch again) and ``lock`` (the run's lease).
Here are the names the other parts use.
"""

from __future__ import annotations

from daskgif.storage.fetch import fetch_file, fetch_needed, read_source
from daskgif.storage.files import (
    SpanReader,
    abort_writes,
    append_bytes,
    atomic_write,
    file_identity,
    list_sizes,
    open_input,
    read_small,
    read_span,
    remove_stale_frames,
    remove_stale_parts,
    write_bytes,
)
from daskgif.storage.lock import Lease
from daskgif.storage.paths import check_target, expand_inputs, file_kind, frame_name, is_glob, join_path, local_path

__all__ = [
    "Lease", "SpanReader", "abort_writes", "append_bytes", "atomic_write", "check_target", "expand_inputs",
    "fetch_file", "fetch_needed", "file_identity", "file_kind", "frame_name", "is_glob", "join_path", "list_sizes",
    "local_path", "open_input", "read_small", "read_source", "read_span", "remove_stale_frames",
    "remove_stale_parts", "write_bytes",
]
