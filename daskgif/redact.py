"""Keep secrets out of everything daskgif writes, logs and sends: :func:`mask` is the one rule.

:func:`scrub` applies it to JSON-like data, :class:`MaskingFilter` to log records on a handler.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote
from collections.abc import Mapping
from typing import Any

__all__ = ["mask", "mask_secrets_of", "scrub", "safe_parameters", "MaskingFilter", "SECRET_PARAMETERS"]

MASK = "***"

#: Query-string parameters whose values are credentials (compared without regard to case).
SECRET_PARAMETERS = (
    "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "X-Goog-Signature", "X-Goog-Credential",
    "Signature", "sig", "token", "access_token", "key", "api_key", "apikey", "password", "secret", "client_secret",
    "auth", "AWSAccessKeyId",
)

# scheme://authority; the authority stops where a path, query, fragment, space or quote begins.
_AUTHORITY = re.compile(r"""\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#\s'"]*)""")
# The longest names first, so that ``api_key`` is not read as ``key`` after ``api_``.
_NAMES = "|".join(re.escape(name) for name in sorted(SECRET_PARAMETERS, key=len, reverse=True))
# A value ends where the query does, or before a ":" that ends a sentence ("...?token=t: HTTP 404").
_PARAMETER = re.compile(r"""([?&;#])(%s)=[^&#\s'"]*?(?=:?(?:[&#\s'"]|$))""" % _NAMES, re.IGNORECASE)


def _mask_authority(match: re.Match) -> str:
    scheme, authority = match.groups()
    userinfo, at, host = authority.rpartition("@")  # the host starts after the last "@"
    if not at:
        return match.group(0)
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{user}:{MASK}@{host}" if colon else f"{scheme}{MASK}@{host}"


def mask(text: str) -> str:
    """Return *text* (a URL, a log line, a repr) with the credentials of every URL in it masked.

    A password is masked and its user kept; a user name alone is a token.  The host starts after the
    *last* ``@``; the values of :data:`SECRET_PARAMETERS` in a query are masked too.

    >>> mask("https://alice:pw@host/x.img"), mask("http://s3cr3tTOKEN@host/x")
    ('https://alice:***@host/x.img', 'http://***@host/x')
    >>> mask("http://alice:p@ss@host/x"), mask("https://host/users/bob@example.com")
    ('http://alice:***@host/x', 'https://host/users/bob@example.com')
    >>> mask("https://b.s3.amazonaws.com/k?X-Amz-Credential=AK%2F1&x-amz-security-token=t&v=1")
    'https://b.s3.amazonaws.com/k?X-Amz-Credential=***&x-amz-security-token=***&v=1'
    >>> mask('cannot fetch "https://me:pw@host/x": 404; retry https://tok@other')
    'cannot fetch "https://me:***@host/x": 404; retry https://***@other'
    >>> mask("cannot fetch https://h/a.img?token=t0k:en: HTTP 404 Not Found")
    'cannot fetch https://h/a.img?token=***: HTTP 404 Not Found'
    """
    return _PARAMETER.sub(rf"\1\2={MASK}", _AUTHORITY.sub(_mask_authority, text))


def mask_secrets_of(url: str, text: str) -> str:
    """Return *text* (a library's error about *url*) with :func:`mask` applied and every credential written
    in *url* masked wherever it appears, quoted as the library saw it (without its scheme).

    >>> mask_secrets_of("s3://AKIA:pw5ecret@bucket/k", 'Invalid bucket name "AKIA:pw5ecret@bucket"')
    'Invalid bucket name "AKIA:***@bucket"'
    >>> mask_secrets_of("s3://AKIA:p%40ss@bucket/k", "Invalid bucket AKIA:p@ss@bucket")
    'Invalid bucket AKIA:***@bucket'
    """
    secrets = set()
    for match in _AUTHORITY.finditer(url):
        userinfo, at, _ = match.group(2).rpartition("@")
        if at:
            user, colon, password = userinfo.partition(":")
            secrets.add(password if colon else user)
    secrets.update(m.group(0).split("=", 1)[1] for m in _PARAMETER.finditer(url))
    secrets |= {unquote(secret) for secret in secrets}  # as the library may quote them, decoded
    text = mask(text)
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def scrub(data: Any) -> Any:
    """Mask the credentials of URLs anywhere in JSON-like *data*; lists and tuples become lists.

    >>> scrub({"message": "cannot fetch https://me:pw@host/x: 404", "n": [1, "s3://k:s@b/y"]})
    {'message': 'cannot fetch https://me:***@host/x: 404', 'n': [1, 's3://k:***@b/y']}
    >>> scrub(("http://tok@h", 2, None, {"http://u:p@h": True}))
    ['http://***@h', 2, None, {'http://u:***@h': True}]
    """
    if isinstance(data, str):
        return mask(data)
    if isinstance(data, dict):
        return {scrub(key): scrub(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [scrub(value) for value in data]
    return data


def safe_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the run parameters as JSON-able data: no storage options or callables, bytes as text, masked.

    >>> safe_parameters({"url": "https://me:pw@host/x.img", "delimiter": b"\\n\\n",
    ...                  "storage_options": {"key": "secret"}, "on_state": [print]})
    {'url': 'https://me:***@host/x.img', 'delimiter': '\\n\\n'}
    """
    return {name: value.decode("latin-1") if isinstance(value, bytes) else scrub(value)
            for name, value in params.items()
            if name not in ("storage_options", "on_state") and not callable(value)}


def json_default(value: Any) -> str:
    """The ``default=`` for :func:`json.dumps`: an object that JSON cannot hold, as masked text.

    >>> import json
    >>> json.dumps({"error": OSError("cannot open http://u:p@h/x")}, default=json_default)
    '{"error": "cannot open http://u:***@h/x"}'
    """
    return mask(str(value))


class MaskingFilter(logging.Filter):
    """A logging filter that masks a record's message, arguments, traceback and stack; put it on a *handler*."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True
