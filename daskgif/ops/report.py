"""Dask's performance report of the runs of ``daskgif run --report FILE``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["performance_report"]


@contextlib.contextmanager
def performance_report(client: Any, filename: str, code: str) -> Iterator[None]:
    """Dask's performance report of what runs inside, self-contained (scripts inlined), with *code* as caller."""
    from distributed import performance_report as report

    collect = report(filename=filename, mode="inline")
    with client.as_current():
        client.sync(collect.__aenter__)
        try:
            yield
        finally:
            client.sync(collect.__aexit__, None, None, None, code=code)
