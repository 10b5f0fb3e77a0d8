"""Reading and writing files through fsspec: atomic writes, spans, appends, and clearing killed writers' files."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO, ContextManager

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from daskgif.redact import mask
from daskgif.storage import held
from daskgif.storage.guard import check_target
from daskgif.storage.paths import (
    FRAME_NAME,
    UPLOAD_NAME,
    frame_name,
    fs_options,
    host_name,
    join_path,
    local_path,
    part_name,
    part_owner,
    pid_alive,
    version_of,
)

__all__ = [
    "APPENDABLE", "SpanReader", "append_bytes", "atomic_write", "exists", "file_identity",
    "list_sizes", "open_input", "read_span", "remove_file", "remove_stale_frames",
    "remove_stale_parts", "write_bytes",
]

logger = logging.getLogger(__name__)


def exists(path: str, storage_options: dict | None = None) -> bool:
    """Whether *path* exists.

    >>> exists("memory://daskgif-doctest/missing.img")
    False
    """
    fs, p = url_to_fs(path, **fs_options(path, storage_options))
    return fs.exists(p)


def remove_file(path: str, storage_options: dict | None) -> None:
    """Remove *path* if it exists."""
    local = local_path(path)
    try:
        if local is not None:
            os.unlink(local)
        else:
            fs, p = url_to_fs(path, **fs_options(path, storage_options))
            fs.rm_file(p)
    except FileNotFoundError:
        pass


def remove_stale_parts(directory: str, prefix: str | None = None, *, max_age: float | None = 86400) -> list[str]:
    """Remove the temporary files that killed writers left in local *directory*; return their paths.

    A temporary file of :func:`atomic_write` (``.<name>.<host>-<pid>-<hex>.part``)
    is stale when it was written on this host by a process that is gone, or, from any
    host or an older daskgif (``.<name>.<hex>.part``), when it was not modified for
    *max_age* seconds.  A live writer's file is never removed.

    Parameters
    ----------
    directory : str
        A local folder (a plain path or ``file://``).  Other URLs hold no temporary
        files: their data is written in the local temporary folder first, under
        :data:`UPLOAD_NAME` (``remove_stale_parts(tempfile.gettempdir(), UPLOAD_NAME)``).
    prefix : str, optional
        Only temporary files for destinations whose names start with *prefix*
        (``"image-data.img"`` for a data file and its record, ``"frame_"`` for frames).
    max_age : float, optional
        Seconds without a write after which any temporary file is stale; ``None``: only dead writers'.

    Examples
    --------
    >>> remove_stale_parts("s3://bucket/frames")
    []
    """
    local = local_path(directory)
    if local is None:
        return []
    try:
        names = os.listdir(local or ".")
    except FileNotFoundError:
        return []
    now, host, removed = time.time(), host_name(), []
    for part in names:
        if not (part.startswith(".") and part.endswith(".part")) or (prefix and not part.startswith("." + prefix)):
            continue
        path = os.path.join(local, part)
        owner = part_owner(part, host)
        if owner is not None and owner[1] != os.getpid() and not pid_alive(owner[1]):
            why = f"its writer, pid {owner[1]} on {host}, is gone"
        else:
            try:
                age = now - os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            if max_age is None or age < max_age or (owner is not None and owner[1] == os.getpid()):
                continue
            why = f"not written for {age:.0f} s (max_age={max_age})"
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        logger.info("Removed stale temporary file %s: %s", path, why)
        removed.append(path)
    return removed


#: The ``errno`` values of a write that found no room: a full file system, a quota, a file size limit.
FULL = frozenset(n for n in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if n is not None)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


@contextmanager
def atomic_write(path: str, storage_options: dict | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file whose data appears at *path* only if the block succeeds.

    Locally the data goes to ``.<name>.<host>-<pid>-<hex>.part`` (see :func:`part_name`)
    in the same directory, renamed over *path* with :func:`os.replace` once complete.
    Elsewhere (object stores, ``memory://``) it goes to a local temporary file
    (named the same way after :data:`UPLOAD_NAME`) uploaded with ``put_file`` once
    complete, so no partial object is ever visible.  Missing local parent directories
    are created.  On error (``KeyboardInterrupt`` included) the temporary file is
    removed and an existing *path* is untouched; an aborting process removes it first
    (:func:`daskgif.storage.held.abort_writes`); a killed one leaves it, for
    :func:`remove_stale_parts`.

    Parameters
    ----------
    path : str
        Destination, any writable fsspec path.
    storage_options : dict, optional
        fsspec options.

    Raises
    ------
    OSError
        With its ``errno`` (``EROFS``, ``EACCES``, ``ENOSPC``, ...), naming *path*
        when the temporary file cannot be created, or when writing or closing it
        finds no room (:data:`FULL`).

    Examples
    --------
    >>> with atomic_write("memory://daskgif-doctest/a.bin") as f:
    ...     _ = f.write(b"data")
    >>> read_span("memory://daskgif-doctest/a.bin", 1, 2)
    b'at'
    """
    check_target(path)
    p = local_path(path)
    if p is None:
        fs, p = url_to_fs(path, **fs_options(path, storage_options))
        local = isinstance(fs, LocalFileSystem)
    else:
        local = True
    if local:
        directory, name = os.path.split(p)
        tmp = os.path.join(directory, part_name(name))
    else:
        directory, tmp = "", os.path.join(tempfile.gettempdir(), part_name(UPLOAD_NAME))
    # The local copy of an upload is for this user's eyes only, as mkstemp's would be.
    opener = None if local else _private
    try:
        with held.guard(tmp):  # made and registered at once: an abort of the process removes it, or none is made
            try:
                f = open(tmp, "xb", opener=opener)
            except OSError as e:
                # Missing parents are made when the open fails: a makedirs per frame costs a syscall each.
                # (A bare file name lives in the working directory, which exists; another thread may
                # have made the folder since this open failed.)
                if not directory or (not isinstance(e, FileNotFoundError) and os.path.isdir(directory)):
                    raise
                os.makedirs(directory, exist_ok=True)
                f = open(tmp, "xb", opener=opener)
            held.hold(tmp, functools.partial(remove_file, tmp, None))
    except OSError as e:  # the errno decides whether to retry (EROFS and EACCES: no); the message names *path*
        raise type(e)(e.errno, e.strerror, path) from e
    done = False
    try:
        try:
            with f:  # closing flushes: a full disk may show only here
                yield f
        except OSError as e:
            if e.filename is not None or e.errno not in FULL:
                raise
            # A full disk or quota, raised by a write with no file name: say which file (and where, for an upload).
            where = "" if local else f" (in the local temporary folder {os.path.dirname(tmp)})"
            raise type(e)(e.errno, e.strerror + where, path) from e
        # No fsync: the rename is atomic against a crash or kill of the process, which is the
        # promise; an fsync per frame made writing 1,000 small frames four times slower.
        if local:
            try:
                os.replace(tmp, p)
            except OSError as e:  # name the destination, not the temporary file (a folder in its way, ...)
                raise type(e)(e.errno, e.strerror, path) from None
            done = True
        else:
            fs.put_file(tmp, p)
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        held.let_go(tmp)


def open_input(path: str, storage_options: dict | None = None, mode="rb") -> ContextManager[IO]:
    """Open *path* for reading; use as a context manager.

    >>> with atomic_write("memory://daskgif-doctest/b.bin") as f:
    ...     _ = f.write(b"hello")
    >>> with open_input("memory://daskgif-doctest/b.bin") as f:
    ...     f.read()
    b'hello'
    """
    if "r" not in mode or any(c in mode for c in "wax+"):
        raise ValueError(f"mode must be a read mode such as 'rb', got {mode!r}")
    return fsspec.open(path, mode, **fs_options(path, storage_options))


#: Filesystems whose files can be appended to in place; elsewhere an append rewrites the object.
APPENDABLE = ("file", "local", "memory")


def append_bytes(path: str, data: bytes, storage_options: dict | None = None) -> None:
    """Append *data* to *path*, creating it (and its local folders) if needed.

    On local disk (and ``memory://``) one write in append mode, so concurrent
    writers' lines stay whole; on object stores the object is rewritten
    atomically with *data* added (a store has no append).

    >>> append_bytes("memory://daskgif-doctest/h.jsonl", b"1\\n")
    >>> append_bytes("memory://daskgif-doctest/h.jsonl", b"2\\n")
    >>> read_span("memory://daskgif-doctest/h.jsonl", 0, 4)
    b'1\\n2\\n'
    """
    fs, fspath = url_to_fs(path, **fs_options(path, storage_options))
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    if any(p in APPENDABLE for p in protocols):
        parent = fs._parent(fspath)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(fspath, "ab") as f:
            f.write(data)
        return
    old = fs.cat_file(fspath) if fs.exists(fspath) else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    with atomic_write(path, storage_options) as f:
        f.write(old + data)


def read_span(path: str, offset: int, length: int, storage_options: dict | None = None) -> bytes:
    """Read *length* bytes of *path* from *offset*; ``EOFError`` if the file ends first.

    >>> with atomic_write("memory://daskgif-doctest/c.bin") as f:
    ...     _ = f.write(b"0123456789")
    >>> read_span("memory://daskgif-doctest/c.bin", 3, 4)
    b'3456'
    """
    local = local_path(path)
    if local is None:
        with open_input(path, storage_options) as f:
            return _read_at(f, path, offset, length)
    fd = os.open(local, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        return _pread(fd, path, offset, length)
    finally:
        os.close(fd)


def _pread(fd: int, path: str, offset: int, length: int) -> bytes:
    """Read a span of open file *fd* without moving its position: threads may share *fd*."""
    if offset < 0 or length < 0:
        raise ValueError(f"span must have offset >= 0 and length >= 0, got {(offset, length)!r}")
    data = os.pread(fd, length, offset)
    while len(data) < length:  # a short read is allowed (signals, network file systems): read on
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            raise EOFError(f"{path}: expected {length} bytes at offset {offset}, got {len(data)}")
        data += more
    return data


class SpanReader:
    """Read spans of one file, opening it once per thread: what a batch of frames reads from the data file.

    Locally each thread opens the file on its first read and reads it with
    ``os.pread``; :meth:`release` closes the calling thread's file (a batch
    calls it when it ends, see :func:`daskgif.core.fanout.run_batch`).  Elsewhere
    each read opens the file (fsspec), as :func:`read_span` does.  A reader
    pickles as its path and options.

    >>> with atomic_write("memory://daskgif-doctest/g.bin") as f:
    ...     _ = f.write(b"0123456789")
    >>> SpanReader("memory://daskgif-doctest/g.bin").read(2, 3)
    b'234'
    """

    def __init__(self, path: str, storage_options: dict | None = None):
        self.path, self.storage_options = path, storage_options
        self.local = local_path(path) if hasattr(os, "pread") else None
        self._mine = threading.local()

    def __reduce__(self) -> Any:
        return (SpanReader, (self.path, self.storage_options))

    def __repr__(self) -> str:
        return f"SpanReader({mask(self.path)!r})"

    def read(self, offset: int, length: int) -> bytes:
        """Return *length* bytes from *offset*; ``EOFError`` if the file ends first."""
        if self.local is None:
            return read_span(self.path, offset, length, self.storage_options)
        f = getattr(self._mine, "file", None)
        if f is None:
            f = self._mine.file = open(self.local, "rb", buffering=0)
        return _pread(f.fileno(), self.path, offset, length)

    def release(self) -> None:
        """Close the calling thread's file, if open; a later read opens it again."""
        f = self._mine.__dict__.pop("file", None)
        if f is not None:
            f.close()


def write_bytes(path: str, data: bytes, storage_options: dict | None = None) -> bool:
    """Write *data* to *path* atomically, unless *path* already holds exactly *data*.

    Returns whether the file was written.  An identical local file is left as it
    is (its time stamps too): re-running a pipeline over the same frames rewrites
    nothing, and renaming over an existing file costs a flush on many file systems.

    >>> write_bytes("memory://daskgif-doctest/e.bin", b"abc")
    True
    """
    local = local_path(path)
    if local is not None:
        try:
            st = os.stat(local)  # one stat: the common case is a fresh folder, where it fails at once
        except OSError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == len(data):
            with open(local, "rb") as f:
                if f.read() == data:
                    return False
    with atomic_write(path, storage_options) as f:
        f.write(data)
    return True


def _read_at(f: IO, path: str, offset: int, length: int) -> bytes:
    if offset < 0 or length < 0:
        raise ValueError(f"span must have offset >= 0 and length >= 0, got {(offset, length)!r}")
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise EOFError(f"{path}: expected {length} bytes at offset {offset}, got {len(data)}")
    return data


def list_sizes(directory: str, storage_options: dict | None = None) -> dict[str, int]:
    """The files of *directory* by name, with their sizes: one listing (one request on object storage).

    >>> write_bytes("memory://daskgif-doctest/ls/a.bin", b"abc")
    True
    >>> list_sizes("memory://daskgif-doctest/ls"), list_sizes("memory://daskgif-doctest/none")
    ({'a.bin': 3}, {})
    """
    fs, path = url_to_fs(directory, **fs_options(directory, storage_options))
    fs.invalidate_cache(path)  # what is there now, not what this process listed before
    try:
        entries = fs.ls(path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {f["name"].rstrip("/").rsplit("/", 1)[-1]: f.get("size") or 0 for f in entries
            if f.get("type") != "directory"}


def file_identity(path: str, storage_options: dict | None = None) -> dict[str, Any]:
    """What says *path* is still the same file: its size and its version marker (ETag, else mtime).

    One request (``info``); two files with equal identities are taken to hold the same bytes.
    """
    fs, p = url_to_fs(path, **fs_options(path, storage_options))
    info = fs.info(p)
    return {"size": info.get("size"), "version": version_of(info)}


def remove_stale_frames(frames_dir: str, count: int, storage_options: dict | None = None,
                        names: Iterable[str] | None = None) -> list[str]:
    """Remove the frame files of an earlier run that are not among this run's *count* frames.

    A run with fewer frames, or with a different number of digits in its names,
    would otherwise leave a mixed set in *frames_dir*.  Only names daskgif writes
    (``frame_<digits>.gif``) are touched; listing the folder costs one request on
    object storage.

    >>> with atomic_write("memory://daskgif-doctest/fr/frame_07.gif") as f:
    ...     _ = f.write(b"GIF89a")
    >>> remove_stale_frames("memory://daskgif-doctest/fr", 3)
    ['memory://daskgif-doctest/fr/frame_07.gif']
    """
    width = len(frame_name(0, count)) if count else 0
    fs, path = url_to_fs(frames_dir, **fs_options(frames_dir, storage_options))
    if names is None:  # *names*: a listing the caller already made (see list_sizes)
        try:
            names = fs.ls(path, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
    stale = []
    for name in names:
        base = name.rstrip("/").rsplit("/", 1)[-1]
        match = FRAME_NAME.fullmatch(base)
        if match and (len(base) != width or int(match.group(1)) >= count):
            stale.append(join_path(frames_dir, base))
            fs.rm_file(fs._strip_protocol(join_path(frames_dir, base)))
    if stale:
        logger.info("Removed %d frame file(s) of an earlier run from %s", len(stale), frames_dir)
    return stale
