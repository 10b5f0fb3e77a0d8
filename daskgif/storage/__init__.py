"""Every byte daskgif reads or writes, through fsspec: the only part of daskgif that opens files or URLs.

A path is anything fsspec opens (``memory://`` is per process).  Options of ``storage_options`` nested
under a protocol name (``{"s3": {"key": ...}}``) are for that protocol only, the others for every path.
Settings are arguments: callers read ``dask.config`` on the client.
"""

from __future__ import annotations

from daskgif.storage.fetch import fetch_file, fetch_needed, read_source
from daskgif.storage.files import (SpanReader, abort_writes, append_bytes, atomic_write, file_identity, list_sizes,
                                   open_input, read_small, read_span, remove_file, write_bytes)
from daskgif.storage.leftovers import remove_dead_uploads, remove_stale_frames, remove_stale_parts
from daskgif.storage.lock import Lease
from daskgif.storage.paths import (FRAME_PREFIX, check_target, expand_inputs, file_kind, frame_name,
                                   frame_pattern, is_glob, join_path, list_inputs, local_path)

__all__ = [
    "FRAME_PREFIX", "Lease", "SpanReader", "abort_writes", "append_bytes", "atomic_write", "check_target", "expand_inputs",
    "fetch_file", "fetch_needed", "file_identity", "file_kind", "frame_name", "frame_pattern", "is_glob", "join_path", "list_inputs",
    "list_sizes", "local_path", "open_input", "read_small", "read_source", "read_span", "remove_file",
    "remove_dead_uploads", "remove_stale_frames", "remove_stale_parts", "write_bytes",
]
