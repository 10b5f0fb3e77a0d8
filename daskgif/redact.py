"""Keep secrets out of what daskgif records and sends: history lines and webhook payloads."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["safe_parameters", "scrub", "mask", "MaskingFilter"]


def safe_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the run parameters as JSON-able data, without secrets.

    ``storage_options`` (credentials) and callables are left out, bytes become
    text, and a password in a URL is masked.

    >>> safe_parameters({"url": "https://me:pw@host/x.img", "delimiter": b"\\n\\n",
    ...                  "storage_options": {"key": "secret"}, "on_state": [print]})
    {'url': 'https://me:***@host/x.img', 'delimiter': '\\n\\n'}
    """
    return {name: value.decode("latin-1") if isinstance(value, bytes) else scrub(value)
            for name, value in params.items()
            if name not in ("storage_options", "on_state") and not callable(value)}


PASSWORD_IN_URL = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]*:)[^@\s/]+@")


def scrub(data: Any) -> Any:
    """Mask the passwords of URLs anywhere in JSON-like *data* (error messages quote URLs).

    >>> scrub({"message": "cannot fetch https://me:pw@host/x: 404", "n": [1, "s3://k:s@b/y"]})
    {'message': 'cannot fetch https://me:***@host/x: 404', 'n': [1, 's3://k:***@b/y']}
    """
    if isinstance(data, str):
        return PASSWORD_IN_URL.sub(r"\1***@", data)
    if isinstance(data, dict):
        return {key: scrub(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [scrub(value) for value in data]
    return data



def mask(text: str) -> str:
    """Mask the secrets of every URL in *text*.

    >>> mask("cannot fetch https://me:pw@host/x")
    'cannot fetch https://me:***@host/x'
    """
    return scrub(text)


class MaskingFilter(logging.Filter):
    """Mask secrets in a log record's message and arguments, so no handler ever sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        return True
