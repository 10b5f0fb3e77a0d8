"""Keep secrets out of everything daskgif writes, logs and sends: one masking function.

:func:`mask` is the one rule; every output channel goes through it:

- :func:`scrub` masks JSON-like data (history lines, webhook bodies, states);
- :func:`safe_parameters` turns run parameters into such data, without the storage options;
- :class:`MaskingFilter` masks log records on a handler (messages, arguments, tracebacks).

What is masked, in URLs anywhere in free text (log lines, error messages, reprs):

- the userinfo of a URL's authority: ``user:password@`` keeps the user and masks the
  password (``alice:***@host``); a user name alone is a token (``***@host``).  The
  authority ends at the first ``/``, ``?``, ``#``, whitespace or quote, and the host
  starts after its *last* ``@``, so a password holding ``@`` or ``:`` is masked whole;
- the values of query-string (or fragment) parameters that carry credentials in
  presigned object-store URLs and APIs (:data:`SECRET_PARAMETERS`, any case).

A password holding ``/``, ``?``, ``#``, whitespace or a quote unencoded cannot be told
from a path and is not recognised; URLs need those characters percent-encoded anyway.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["mask", "scrub", "safe_parameters", "MaskingFilter", "SECRET_PARAMETERS"]

MASK = "***"

#: Query-string parameters whose values are credentials (compared without regard to case).
SECRET_PARAMETERS = (
    "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "X-Goog-Signature", "X-Goog-Credential",
    "Signature", "sig", "token", "access_token", "key", "api_key", "apikey", "password", "secret", "client_secret",
)

# scheme://authority; the authority stops where a path, query, fragment, space or quote begins.
_AUTHORITY = re.compile(r"""\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#\s'"]*)""")
# The longest names first, so that ``api_key`` is not read as ``key`` after ``api_``.
_NAMES = "|".join(re.escape(name) for name in sorted(SECRET_PARAMETERS, key=len, reverse=True))
_PARAMETER = re.compile(r"""([?&;#])(%s)=[^&#\s'"]*""" % _NAMES, re.IGNORECASE)


def _mask_authority(match: re.Match) -> str:
    scheme, authority = match.groups()
    at = authority.rfind("@")
    if at < 0:
        return match.group(0)
    userinfo, host = authority[:at], authority[at + 1:]
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{user}:{MASK}@{host}" if colon else f"{scheme}{MASK}@{host}"


def mask(text: str) -> str:
    """Return *text* with the credentials of every URL in it masked.

    Parameters
    ----------
    text : str
        Any text: a URL, a log line, an error message, a repr.

    Returns
    -------
    str
        *text* with URL passwords, user-name tokens and credential query
        parameters replaced by ``***``; masking twice changes nothing more.

    Examples
    --------
    A password is masked, its user kept; a user name alone is a token:

    >>> mask("https://alice:pw@host/x.img")
    'https://alice:***@host/x.img'
    >>> mask("http://s3cr3tTOKEN@host/x")
    'http://***@host/x'

    The host starts after the last ``@``; ``:`` and ``@`` in a password are masked too:

    >>> mask("http://alice:p@ss@host/x"), mask("s3://key:se:cr@t@bucket")
    ('http://alice:***@host/x', 's3://key:***@bucket')
    >>> mask("ftp://alice:pw@host:21"), mask("https://:pw@host?q=1")
    ('ftp://alice:***@host:21', 'https://:***@host?q=1')

    An ``@`` after the authority is not userinfo:

    >>> mask("https://host/users/bob@example.com and mail@example.com")
    'https://host/users/bob@example.com and mail@example.com'

    Credentials in the query string of presigned URLs, any case:

    >>> mask("https://b.s3.amazonaws.com/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc&x-amz-security-token=t")
    'https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&x-amz-security-token=***'
    >>> mask("https://a.blob.core.windows.net/c/x?sv=2020&sig=abc%3D&se=1")
    'https://a.blob.core.windows.net/c/x?sv=2020&sig=***&se=1'
    >>> mask("https://h/x?API_KEY=1&keys=2&apikey=3#access_token=4")
    'https://h/x?API_KEY=***&keys=2&apikey=***#access_token=***'

    URLs inside free text, error messages and reprs:

    >>> mask("ClientResponseError(..., url=URL('http://a:b@h/'))")
    "ClientResponseError(..., url=URL('http://a:***@h/'))"
    >>> mask('cannot fetch "https://me:pw@host/x": 404; retry https://tok@other')
    'cannot fetch "https://me:***@host/x": 404; retry https://***@other'
    >>> mask("no URL here: user@example.com, a=b")
    'no URL here: user@example.com, a=b'
    """
    return _PARAMETER.sub(rf"\1\2={MASK}", _AUTHORITY.sub(_mask_authority, text))


def scrub(data: Any) -> Any:
    """Mask the credentials of URLs anywhere in JSON-like *data* (strings, keys, nested containers).

    Dicts stay dicts; lists and tuples become lists (as JSON has them); other
    values are returned as they are.

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
    """Return the run parameters as JSON-able data, without secrets.

    ``storage_options`` (credentials) and callables are left out, bytes become
    text, and URL credentials are masked.

    >>> safe_parameters({"url": "https://me:pw@host/x.img", "delimiter": b"\\n\\n",
    ...                  "storage_options": {"key": "secret"}, "on_state": [print]})
    {'url': 'https://me:***@host/x.img', 'delimiter': '\\n\\n'}
    >>> safe_parameters({"url": "https://host/x?X-Amz-Signature=abc", "storage_options": None})
    {'url': 'https://host/x?X-Amz-Signature=***'}
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
    """A logging filter that masks the credentials in a record's whole formatted text.

    Put it on a *handler* (a filter on a logger sees only the records logged
    to that very logger, not its children's).  The message is formatted with
    its arguments and masked, and so are the traceback and stack text, before
    any formatter sees them; the record is never dropped.

    Examples
    --------
    >>> import io, logging
    >>> stream = io.StringIO()
    >>> handler = logging.StreamHandler(stream)
    >>> handler.addFilter(MaskingFilter())
    >>> log = logging.getLogger("daskgif.doctest.redact")
    >>> log.addHandler(handler); log.propagate = False
    >>> log.warning("Retrying %s after %s", "http://tok@h/x", OSError("http://u:pw@h/x?sig=1"))
    >>> stream.getvalue()
    'Retrying http://***@h/x after http://u:***@h/x?sig=***\\n'
    >>> log.removeHandler(handler)
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True
