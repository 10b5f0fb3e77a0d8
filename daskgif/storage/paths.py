"""Where daskgif's files go: fsspec protocols and options, local paths, frame names, temporary names."""

from __future__ import annotations

import errno
import os
import posixpath
import re
import socket
import stat
import uuid

import fsspec
from fsspec.core import split_protocol

__all__ = [
    "FRAME_NAME", "FRAME_PREFIX", "UPLOAD_NAME", "check_target", "expand_inputs", "file_kind", "frame_name", "fs_options",
    "host_name", "is_glob", "join_path", "list_inputs", "local_path", "part_name", "part_owner", "pid_alive",
    "url_protocols", "version_of",
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
    """A fresh temporary name for a file being written as *name*, whose writer :func:`part_owner` tells.

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
    return posixpath.join(directory, name) if "://" in directory else os.path.join(directory, name)


#: How every frame file's name starts; :data:`FRAME_NAME` matches the whole name.
FRAME_PREFIX = "frame_"
FRAME_NAME = re.compile(rf"{FRAME_PREFIX}(\d+)\.gif")


def frame_pattern(count: int) -> str:
    """The name of every frame file of a run of *count* frames, as a :meth:`str.format` pattern of ``index``.

    >>> frame_pattern(101), frame_pattern(101).format(index=7)
    ('frame_{index:03d}.gif', 'frame_007.gif')
    """
    return f"{FRAME_PREFIX}{{index:0{max(2, len(str(count - 1)))}d}}.gif"


def frame_name(index: int, count: int) -> str:
    """File name of frame *index* of *count*, zero-padded so names sort in order.

    >>> frame_name(0, 1), frame_name(99, 100), frame_name(7, 101)
    ('frame_00.gif', 'frame_99.gif', 'frame_007.gif')
    """
    if not 0 <= index < count:
        raise ValueError(f"index must be in range(count={count}), got {index!r}")
    return frame_pattern(count).format(index=index)


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
    """The input URLs: each pattern expanded to the files it matches (:func:`list_inputs`), each URL once.

    >>> import fsspec
    >>> for name in ("b.img", "a.img", "c.txt"):
    ...     fsspec.filesystem("memory").pipe(f"/doc-inputs/{name}", b"x")
    >>> expand_inputs("memory://doc-inputs/*.img")
    ['memory:///doc-inputs/a.img', 'memory:///doc-inputs/b.img']
    >>> expand_inputs(["x.img", "memory://doc-inputs/[ab].img", "memory://doc-inputs/a*", f"{os.getcwd()}/x.img"])
    ['x.img', 'memory:///doc-inputs/a.img', 'memory:///doc-inputs/b.img']
    """
    found: dict[str, str] = {}  # by the file it names (a local path made absolute): the first way it was written
    for url in [urls] if isinstance(urls, str) else urls:
        for one in list_inputs(url, storage_options) if is_glob(url) else [url]:
            local = local_path(one)
            found.setdefault(one if local is None else os.path.abspath(local), one)
    return list(found.values())


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
    """Refuse to replace a local *path* that is a device, a fifo or a socket: a fifo would block, a device is
    the system's.  A symbolic link is replaced, never followed; a folder, ``os.replace`` refuses.

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


def version_of(info: dict) -> str | None:
    """A file's version marker in its fsspec details: its ETag (or version id), else its modification time.

    >>> version_of({"size": 3, "ETag": '"ab"', "mtime": 1.5}), version_of({"size": 3, "mtime": 1.5}), version_of({})
    ('"ab"', '1.5', None)
    """
    marker = next((info[k] for k in ("ETag", "etag", "VersionId", "mtime", "LastModified", "last_modified",
                                     "created") if info.get(k) is not None), None)
    return None if marker is None else str(marker)


def list_inputs(location: str, storage_options: dict | None = None) -> dict[str, tuple[int | None, str | None]]:
    """Every file under the folder or prefix *location* (or matching the pattern), sorted, with its size and
    version, from one listing (not one request per file); a location that does not exist lists nothing.

    >>> import fsspec
    >>> fsspec.filesystem("memory").pipe("/doc-watch/in/a.img", b"abc")
    >>> [(url, size) for url, (size, version) in list_inputs("memory://doc-watch/in").items()]
    [('memory:///doc-watch/in/a.img', 3)]
    """
    fs, path = fsspec.core.url_to_fs(location, **fs_options(location, storage_options))
    fs.invalidate_cache()  # what is there now, not what this process listed before
    found = fs.glob(path, detail=True) if is_glob(location) else fs.find(path, detail=True)
    protocol, _ = split_protocol(location)
    return {fs.unstrip_protocol(name) if protocol else name: (info.get("size"), version_of(info))
            for name, info in sorted(found.items()) if info.get("type") != "directory"}
