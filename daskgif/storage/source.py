"""The record of where a data file came from, kept next to it: ``<data_file>.source.json``.

:func:`~daskgif.storage.fetch.fetch_file` writes it once the data file is complete;
:func:`~daskgif.storage.fetch.fetch_needed` reads it to tell whether the data file is
what a URL gives.  The URL is kept as its digest (it may hold a token) and masked.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from typing import Any

from daskgif.redact import mask
from daskgif.storage.files import atomic_write, open_input

__all__ = ["read_source", "source_path", "source_record", "url_digest", "write_source"]

logger = logging.getLogger(__name__)


def source_path(data_file: str) -> str:
    """Where the record of *data_file*'s source is kept: next to it, with ``.source.json`` appended.

    >>> source_path("s3://bucket/image-data.img")
    's3://bucket/image-data.img.source.json'
    """
    return data_file + ".source.json"


def url_digest(url: str) -> str:
    """The SHA-256 of *url*, in hex: how a record names its URL without keeping secrets in it.

    >>> url_digest("https://h/a.img")[:16]
    '04eda8b868a5e6d5'
    """
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def source_record(url: str, size: int, validators: dict[str, str | None] | None = None, *,
                  now: datetime.datetime) -> dict[str, Any]:
    """The record of a fetch of *size* bytes from *url*, as written next to the data file.

    The URL is kept as its digest (it may hold a token) and masked, for humans.

    >>> from datetime import datetime, timezone
    >>> now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> record = source_record("https://me:pw@h/a.img", 3, {"etag": '"x1"'}, now=now)
    >>> record["url"], record["size"], record["etag"], record["last_modified"], record["fetched_at"]
    ('https://me:***@h/a.img', 3, '"x1"', None, '2026-01-02T00:00:00+00:00')
    >>> record["url_sha256"] == url_digest("https://me:pw@h/a.img")
    True
    """
    validators = validators or {}
    return {"url_sha256": url_digest(url), "url": mask(url), "size": size, "etag": validators.get("etag"),
            "last_modified": validators.get("last_modified"), "fetched_at": now.isoformat()}


def read_source(data_file: str, storage_options: dict | None = None) -> dict[str, Any] | None:
    """The record of where *data_file* came from, or ``None`` when it has none (or an unreadable one)."""
    path = source_path(data_file)
    try:
        with open_input(path, storage_options) as f:
            record = json.loads(f.read())
    except FileNotFoundError:
        return None
    except ValueError as e:  # not JSON: treated as no record, so the data is fetched again
        logger.warning("Ignoring %s, which is not a source record: %s", path, e)
        return None
    return record if isinstance(record, dict) else None


def write_source(data_file: str, record: dict[str, Any], storage_options: dict | None = None) -> None:
    """Write *record* (see :func:`source_record`) next to *data_file*, atomically.

    >>> from datetime import datetime, timezone
    >>> record = source_record("memory://doc/a.img", 4, now=datetime(2026, 1, 2, tzinfo=timezone.utc))
    >>> write_source("memory://daskgif-doctest/r.img", record)
    >>> read_source("memory://daskgif-doctest/r.img") == record
    True
    """
    with atomic_write(source_path(data_file), storage_options) as f:
        f.write(json.dumps(record, indent=1).encode())
