"""Reading and writing files through fsspec: atomic writes, spans, appends, small files, and what an abort removes.

An abort of the process (a second Ctrl-C or SIGTERM) exits without waiting for threads
in the middle of a write, so every temporary file and lease is registered while it
exists (:func:`hold`) and :func:`abort_writes` removes them all.  Local files are made
under :func:`guard`, which holds the same lock and refuses once the abort ran: a file
is made and registered before it, or never made.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO, ContextManager

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from daskgif.redact import mask
from daskgif.storage.paths import (
    UPLOAD_NAME,
    check_target,
    file_kind,
    fs_options,
    local_path,
    part_name,
    version_of,
)

__all__ = [
    "SpanReader", "abort_writes", "append_bytes", "atomic_write", "file_identity", "guard", "hold", "let_go",
    "list_sizes", "named", "open_input", "read_small", "read_span", "remove_file", "write_bytes",
]

logger = logging.getLogger(__name__)

_lock = threading.RLock()  # re-entrant: an undo (a lease's release) runs under it
_undo: dict[str, Callable[[], None]] = {}
_aborted = False


@contextmanager
def guard(path: str) -> Iterator[None]:
    """Make *path* in the block, under the lock of :func:`abort_writes` (not on an object store: it would hold
    every thread during a request); ``ECANCELED`` once an abort ran."""
    with _lock:
        if _aborted:
            raise OSError(errno.ECANCELED, "not written: this process is aborting", path)
        if local_path(path) is not None:
            yield
            return
    yield


def hold(key: str, undo: Callable[[], None]) -> None:
    """Register what this process made under *key*, and how an abort undoes it (removes a file, ends a lease)."""
    with _lock:
        _undo[key] = undo


def let_go(key: str) -> None:
    """*key* is done with (renamed into place, removed, released): an abort leaves it alone."""
    with _lock:
        _undo.pop(key, None)


def abort_writes() -> list[str]:
    """Undo everything registered, in order, and make nothing more; return the keys undone.

    >>> with guard("example.part"):
    ...     hold("example.part", lambda: None)  # made, then registered as one step
    >>> let_go("example.part")
    """
    global _aborted
    with _lock:
        _aborted = True
        undone = list(_undo)
        for key, undo in list(_undo.items()):  # an undo lets its key go
            try:
                undo()
            except Exception as e:  # noqa: BLE001 - the others must still go
                logger.warning("Could not remove %s while aborting: %s", key, e)
        _undo.clear()
    return undone


def named(e: OSError, path: str, where: str = "") -> OSError:
    """*e* again, naming *path* (not a temporary file, or none), *where* added to its message."""
    if e.errno is None:  # a remote file system's error may carry only a message (a filename would hide it)
        return type(e)(f"{e}{where}: {path!r}")
    return type(e)(e.errno, e.strerror + where, path)


def remove_file(path: str, storage_options: dict | None) -> None:
    """Remove *path* if it exists."""
    local = local_path(path)
    with contextlib.suppress(FileNotFoundError):
        if local is not None:
            os.unlink(local)
        else:
            fs, p = url_to_fs(path, **fs_options(path, storage_options))
            fs.rm_file(p)


#: The ``errno`` values of a write that found no room: a full file system, a quota, a file size limit.
FULL = frozenset(n for n in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if n is not None)


@contextmanager
def atomic_write(path: str, storage_options: dict | None = None, *, checked: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file whose data appears at *path* only if the block succeeds.

    Locally the data goes to a temporary file in the same folder (see :func:`part_name`),
    renamed over *path* once complete; missing folders are made.  Elsewhere it goes to a
    local temporary file uploaded once complete.  On error (``KeyboardInterrupt``
    included) the temporary file is removed and *path* untouched; an aborting process
    removes it too, a killed one leaves it for :func:`~daskgif.storage.leftovers.remove_stale_parts`.  An
    ``OSError`` keeps its ``errno`` (``EROFS``, ``ENOSPC``, ...) and names *path*.  *checked*: the caller
    found nothing at *path* (:func:`~daskgif.storage.paths.check_target` is skipped).

    >>> with atomic_write("memory://daskgif-doctest/a.bin") as f:
    ...     _ = f.write(b"data")
    >>> read_span("memory://daskgif-doctest/a.bin", 1, 2)
    b'at'
    """
    if not checked:
        check_target(path)
    p = local_path(path)
    local = p is not None
    if not local:
        fs, p = url_to_fs(path, **fs_options(path, storage_options))
        local = isinstance(fs, LocalFileSystem)
    if local:
        directory, name = os.path.split(p)
        tmp = os.path.join(directory, part_name(name))
    else:
        directory, tmp = "", os.path.join(tempfile.gettempdir(), part_name(UPLOAD_NAME))
    # The local copy of an upload is for this user's eyes only, as mkstemp's would be.
    opener = None if local else lambda name, flags: os.open(name, flags, 0o600)
    try:
        with guard(tmp):  # made and registered at once: an abort of the process removes it, or none is made
            try:
                f = open(tmp, "xb", opener=opener)
            except OSError as e:
                # Missing parents are made when the open fails: a makedirs per frame costs a syscall each.
                # (Another thread may have made the folder since this open failed.)
                if not directory or (not isinstance(e, FileNotFoundError) and os.path.isdir(directory)):
                    raise
                os.makedirs(directory, exist_ok=True)
                f = open(tmp, "xb", opener=opener)
            hold(tmp, lambda: remove_file(tmp, None))
    except OSError as e:  # the errno decides whether to retry (EROFS and EACCES: no)
        raise named(e, path) from e
    done = False
    try:
        try:
            with f:  # closing flushes: a full disk may show only here
                yield f
        except OSError as e:
            if e.filename is not None or e.errno not in FULL:
                raise
            where = "" if local else f" (in the local temporary folder {os.path.dirname(tmp)})"
            raise named(e, path, where) from e
        # No fsync: the rename is atomic against a crash or kill of the process, which is the
        # promise; an fsync per frame made writing 1,000 small frames four times slower.
        if local:
            try:
                os.replace(tmp, p)
            except OSError as e:  # a folder in its way, ...
                raise named(e, path) from None
            done = True
        else:
            fs.put_file(tmp, p)
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        let_go(tmp)


def write_bytes(path: str, data: bytes, storage_options: dict | None = None) -> bool:
    """Write *data* to *path* atomically, unless *path* already holds exactly *data*; return whether it wrote.

    An identical local file keeps its time stamps: re-running over the same frames rewrites nothing.

    >>> write_bytes("memory://daskgif-doctest/e.bin", b"abc")
    True
    """
    local = local_path(path)
    try:  # one lstat, also atomic_write's check: the common case is a fresh folder, where it fails at once
        st = None if local is None else os.lstat(local)
    except (FileNotFoundError, NotADirectoryError):
        st = False
    if st and stat.S_ISREG(st.st_mode) and st.st_size == len(data):
        with open(local, "rb") as f:  # type: ignore[arg-type]
            if f.read() == data:
                return False
    with atomic_write(path, storage_options, checked=st is False) as f:
        f.write(data)
    return True


def open_input(path: str, storage_options: dict | None = None) -> ContextManager[IO]:
    """Open *path* for reading in binary; use as a context manager.

    >>> _ = write_bytes("memory://daskgif-doctest/b.bin", b"hello")
    >>> with open_input("memory://daskgif-doctest/b.bin") as f:
    ...     f.read()
    b'hello'
    """
    return fsspec.open(path, "rb", **fs_options(path, storage_options))


def append_bytes(path: str, data: bytes, storage_options: dict | None = None) -> None:
    """Append *data* to *path*, creating it (and its local folders) if needed.

    Locally (and in ``memory://``) one write in append mode, so concurrent writers'
    lines stay whole; an object store has no append: the object is rewritten atomically.

    >>> append_bytes("memory://daskgif-doctest/h.jsonl", b"1\\n")
    >>> append_bytes("memory://daskgif-doctest/h.jsonl", b"2\\n")
    >>> read_span("memory://daskgif-doctest/h.jsonl", 0, 4)
    b'1\\n2\\n'
    """
    fs, fspath = url_to_fs(path, **fs_options(path, storage_options))
    if isinstance(fs, (LocalFileSystem, MemoryFileSystem)):
        if parent := fs._parent(fspath):
            fs.makedirs(parent, exist_ok=True)
        with fs.open(fspath, "ab") as f:
            f.write(data)
        return
    old = fs.cat_file(fspath) if fs.exists(fspath) else b""
    with atomic_write(path, storage_options) as f:
        f.write(old + (b"\n" if old and not old.endswith(b"\n") else b"") + data)


def _read_at(f: IO, path: str, offset: int, length: int) -> bytes:
    """Read *length* bytes of *f* from *offset*; ``EOFError`` if the file ends first.  A local file is read
    with ``os.pread``, which leaves its position alone: threads may share it."""
    if offset < 0 or length < 0:
        raise ValueError(f"span must have offset >= 0 and length >= 0, got {(offset, length)!r}")
    if isinstance(f, io.FileIO) and hasattr(os, "pread"):
        data = b""
        # A short read is allowed (signals, network file systems): read on.
        while len(data) < length and (more := os.pread(f.fileno(), length - len(data), offset + len(data))):
            data += more
    else:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise EOFError(f"{path}: expected {length} bytes at offset {offset}, got {len(data)}")
    return data


def read_span(path: str, offset: int, length: int, storage_options: dict | None = None) -> bytes:
    """Read *length* bytes of *path* from *offset*; ``EOFError`` if the file ends first.

    >>> _ = write_bytes("memory://daskgif-doctest/c.bin", b"0123456789")
    >>> read_span("memory://daskgif-doctest/c.bin", 3, 4)
    b'3456'
    """
    local = local_path(path)
    with open(local, "rb", buffering=0) if local is not None else open_input(path, storage_options) as f:
        return _read_at(f, path, offset, length)


class SpanReader:
    """Read spans of one file, opened once per thread (locally; :meth:`release` closes it), as a batch of frames
    reads the data file.  Elsewhere each read opens the file.  A reader pickles as its path and options.

    >>> _ = write_bytes("memory://daskgif-doctest/g.bin", b"0123456789")
    >>> SpanReader("memory://daskgif-doctest/g.bin").read(2, 3)
    b'234'
    """

    def __init__(self, path: str, storage_options: dict | None = None):
        self.path, self.storage_options = path, storage_options
        self.local = local_path(path)
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
        return _read_at(f, self.path, offset, length)

    def release(self) -> None:
        """Close the calling thread's file, if open; a later read opens it again."""
        f = self._mine.__dict__.pop("file", None)
        if f is not None:
            f.close()


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
    """What says *path* is still the same file: its size and its version marker (ETag, else mtime); one request."""
    fs, p = url_to_fs(path, **fs_options(path, storage_options))
    info = fs.info(p)
    return {"size": info.get("size"), "version": version_of(info)}


def read_small(path: str, storage_options: dict | None = None, limit: int = 2**20, *,
               what: str = "a file daskgif wrote", follow: bool = False) -> bytes:
    """Read a small file (a lock, a manifest, a parameters file) of at most *limit* bytes, if a regular file.

    Locally opened with ``O_NONBLOCK`` (a fifo never blocks) and, unless *follow*,
    ``O_NOFOLLOW`` (a symbolic link is refused, as a device is); *what* the file should be names it in messages.

    >>> read_small("/dev/zero", what="a parameters file", follow=True)
    Traceback (most recent call last):
    ...
    OSError: [Errno 22] is a character device, not a parameters file: '/dev/zero'
    """
    local = local_path(path)
    if local is None:
        with fsspec.open(path, "rb", **fs_options(path, storage_options)) as f:
            data = f.read(limit + 1)
    else:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        try:
            fd = os.open(local, flags | (0 if follow else getattr(os, "O_NOFOLLOW", 0)))
        except OSError as e:
            if e.errno == errno.ELOOP and not follow:  # O_NOFOLLOW met a symbolic link
                raise OSError(errno.ELOOP, f"is a symbolic link, not {what}", path) from None
            raise
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(mode := os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, f"is {file_kind(mode)}, not {what}", path)
            data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"is larger than {limit} bytes, not {what}", path)
    return data
