"""Where daskgif's files go: fsspec protocols and options, local paths, frame names, temporary names.

Only regular files are replaced (:func:`check_target`): a fifo would block, a device
(``/dev/null``) is the system's, a symbolic link leads anywhere.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
import uuid

import fsspec
from fsspec.core import split_protocol

__all__ = [
    "FRAME_NAME", "UPLOAD_NAME", "check_target", "expand_inputs", "file_kind", "frame_name", "fs_options",
    "host_name", "is_glob", "join_path", "local_path", "part_name", "part_owner", "pid_alive", "url_protocols",
]


def url_protocols(url: str) -> list[str]:
    """Protocols of a (possibly chained) URL; a plain path is ``file``, a bare name in a chain its protocol.

    >>> url_protocols("simplecache::zip://a.img::s3://bucket/b.zip"), url_protocols("/tmp/a.img")
    (['simplecache', 'zip', 's3'], ['file'])
    """
    parts = url.split("::")
    return [split_protocol(part)[0] or (part if i < len(parts) - 1 and part.isidentifier() else "file")
            for i, part in enumerate(parts)]


def fs_options(url: str, storage_options: dict | None) -> dict:
    """The fsspec options for *url*: top-level ones, updated by those nested under its protocol."""
    so = dict(storage_options or {})
    if "::" in url:  # fsspec's own convention for chained URLs: options nested by protocol
        return so
    known = set(fsspec.available_protocols()) | set(fsspec.registry)
    nested = {k: so.pop(k) for k in list(so) if isinstance(so[k], dict) and k in known}
    for protocol in url_protocols(url):
        so.update(nested.get(protocol, {}))
    return so


def local_path(path: str) -> str | None:
    """The plain file-system path of *path* when it is local (to skip fsspec's parsing, slower than a frame's I/O).

    >>> local_path("a/b.gif"), local_path("file:///tmp/b.gif"), local_path("s3://bucket/b.gif")
    ('a/b.gif', '/tmp/b.gif', None)
    """
    if "::" in path:
        return None
    protocol, rest = split_protocol(path)
    return rest if protocol in (None, "file", "local") else None


_host_cache = ["", ""]


def host_name() -> str:
    """This machine's name, as written into temporary file names and locks (no ``/``, no spaces)."""
    name = socket.gethostname()
    if name != _host_cache[0]:  # cached: a frame's write would otherwise clean the name every time
        _host_cache[:] = [name, re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "localhost"]
    return _host_cache[1]


def part_name(name: str) -> str:
    """A fresh temporary name for a file being written as *name*: ``.<name>.<host>-<pid>-<hex>.part``
    (so that ``remove_stale_parts`` tells a dead writer's leftovers from a live writer's file).

    >>> n = part_name("clip.gif")
    >>> n.startswith(".clip.gif.") and n.endswith(f"-{os.getpid()}-" + n[-37:-5] + ".part")
    True
    """
    return f".{name}.{host_name()}-{os.getpid()}-{uuid.uuid4().hex}.part"


_PART = re.compile(r"\.(?P<rest>.+)-(?P<pid>\d+)-(?P<hex>[0-9a-f]{32})\.part")


#: The name under which files for object stores and ``memory://`` are written locally before the upload.
UPLOAD_NAME = "daskgif-upload"


def part_owner(part: str, host: str) -> tuple[str, int] | None:
    """The destination name and writer pid of temporary file *part* written on *host*, else ``None``.

    >>> part_owner(".frame_00.gif.node-1.lan-4242-" + "ab" * 16 + ".part", host="node-1.lan")
    ('frame_00.gif', 4242)
    >>> part_owner(".frame_00.gif.other-4242-" + "ab" * 16 + ".part", host="node-1.lan") is None
    True
    """
    m = _PART.fullmatch(part)
    if m is None or not m["rest"].endswith("." + host):
        return None
    return m["rest"][: -len(host) - 1], int(m["pid"])


def pid_alive(pid: int) -> bool:
    """Whether process *pid* of this machine is running (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's (EPERM), or no signals here: alive, the safe side
        pass
    return True


def join_path(directory: str, name: str) -> str:
    """Join *name* to *directory*, a local path or a URL.

    >>> join_path("s3://bucket/dir/", "frame_00.gif")
    's3://bucket/dir/frame_00.gif'
    >>> join_path(".", "frame_00.gif") == os.path.join(".", "frame_00.gif")
    True
    """
    if "://" not in directory:
        return os.path.join(directory, name)
    if directory.endswith("://"):
        return directory + name
    return directory.rstrip("/") + "/" + name


FRAME_NAME = re.compile(r"frame_(\d+)\.gif")


def frame_name(index: int, count: int) -> str:
    """File name of frame *index* of *count*, zero-padded so names sort in order.

    >>> frame_name(0, 1), frame_name(99, 100), frame_name(7, 101)
    ('frame_00.gif', 'frame_99.gif', 'frame_007.gif')
    """
    if not 0 <= index < count:
        raise ValueError(f"index must be in range(count={count}), got {index!r}")
    width = max(2, len(str(count - 1)))
    return f"frame_{index:0{width}d}.gif"


def is_glob(url: str) -> bool:
    """Whether *url* is a pattern (``*``, ``?`` or ``[``) rather than one path.

    >>> is_glob("data/*.img"), is_glob("s3://b/dumps/day-[0-9].img"), is_glob("https://h/a.img?x=1")
    (True, True, False)
    """
    protocol, _ = split_protocol(url)
    if protocol in ("http", "https"):  # a query string is not a pattern
        return False
    return any(c in url for c in "*?[")


def expand_inputs(urls: str | list[str], storage_options: dict | None = None) -> list[str]:
    """The input URLs: a list as it is, or one pattern expanded by its filesystem (one listing), sorted.

    The expanded paths keep the pattern's protocol, so they open the same way.

    >>> import fsspec
    >>> for name in ("b.img", "a.img", "c.txt"):
    ...     fsspec.filesystem("memory").pipe(f"/doc-inputs/{name}", b"x")
    >>> expand_inputs("memory://doc-inputs/*.img")
    ['memory:///doc-inputs/a.img', 'memory:///doc-inputs/b.img']
    """
    if not isinstance(urls, str):
        return list(urls)
    if not is_glob(urls):
        return [urls]
    fs, _, found = fsspec.core.get_fs_token_paths(urls, storage_options=fs_options(urls, storage_options))
    protocol, _ = split_protocol(urls)
    return sorted(fs.unstrip_protocol(path) if protocol else path for path in found)


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

    A symbolic link is replaced, never followed.

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
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode)):
        raise FileExistsError(errno.EEXIST, f"is {file_kind(mode)}, not a regular file: daskgif replaces only "
                                            "regular files", path)
