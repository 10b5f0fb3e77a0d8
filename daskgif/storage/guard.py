"""Only regular files: what daskgif may replace, and how it reads the small files it wrote.

A path handed to daskgif can be anything a file system holds: a fifo (opening it
for reading blocks until a writer comes), a device (``/dev/null``: replacing it as
root would replace the system's), a socket, a folder, a symbolic link (followed,
it leads anywhere).  Writes refuse to replace what is not a regular file
(:func:`check_target`); locks and manifests are read only from regular files,
never following a link nor waiting on a fifo (:func:`read_small`).
"""

from __future__ import annotations

import errno
import os
import stat

import fsspec

from daskgif.storage.paths import fs_options, local_path

__all__ = ["check_target", "file_kind", "read_small"]


#: What a path can be besides a regular file, as messages name it.
KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
         (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words.

    >>> file_kind(stat.S_IFIFO | 0o644), file_kind(stat.S_IFREG | 0o644)
    ('a fifo', 'a regular file')
    """
    return next((name for test, name in KINDS if test(mode)), "a regular file")


def check_target(path: str) -> None:
    """Refuse to replace a local *path* that is a device, a fifo or a socket (a folder, ``os.replace`` refuses).

    A symbolic link is replaced by the file written, never followed, so its target is
    untouched; an object-store path is always a plain object.

    >>> check_target("/dev/null")
    Traceback (most recent call last):
    ...
    FileExistsError: [Errno 17] is a character device, not a regular file: daskgif replaces only regular files: '/dev/null'
    """
    local = local_path(path)
    if local is None:
        return
    try:
        mode = os.lstat(local).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode)):  # a folder: os.replace refuses it
        raise FileExistsError(errno.EEXIST, f"is {file_kind(mode)}, not a regular file: daskgif replaces only "
                                            "regular files", path)


def read_small(path: str, storage_options: dict | None = None, limit: int = 2**20, *,
               what: str = "a file daskgif wrote", follow: bool = False) -> bytes:
    """Read a small file (a lock, a manifest, a parameters file), opening nothing but a regular file.

    Locally the file is opened with ``O_NONBLOCK`` (and ``O_NOFOLLOW`` unless *follow*)
    where the platform has them, so a fifo never blocks, a device is never read and,
    unless *follow*, a symbolic link is never followed; at most *limit* + 1 bytes are read.

    Parameters
    ----------
    what : str
        What the file should be, for messages: ``"a file daskgif wrote"``.
    follow : bool
        Follow a symbolic link (to a regular file: where it leads is checked like
        the path itself); for a file the user names, not one daskgif wrote.

    Raises
    ------
    FileNotFoundError
        When there is none.
    OSError
        Naming what was found instead of a regular file, or a file over *limit* bytes.

    Examples
    --------
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
        if not follow:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(local, flags)
        except OSError as e:
            if e.errno == errno.ELOOP and not follow:  # O_NOFOLLOW met a symbolic link
                raise OSError(errno.ELOOP, f"is a symbolic link, not {what}", path) from None
            raise
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise OSError(errno.EINVAL, f"is {file_kind(mode)}, not {what}", path)
            data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"is larger than {limit} bytes, not {what}", path)
    return data
