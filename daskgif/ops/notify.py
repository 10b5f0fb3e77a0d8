"""Run-level notifications: POST a run's result as JSON to a webhook, with the standard library's HTTP.

A notification is a report, not part of the run: a failed one is retried a few times, then logged.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any
from urllib.parse import urljoin, urlsplit

from daskgif.core.retry import RetryPolicy, retry
from daskgif.pipeline.kinds import check_url
from daskgif.redact import json_default, mask, scrub

__all__ = ["post_result", "check_url", "PostRedirects"]

logger = logging.getLogger(__name__)


def where(url: str) -> str:
    """The URL without its path and query, which often hold a webhook's secret token.

    >>> where("https://hooks.example.com/services/T0/B0/secret")
    'https://hooks.example.com/...'
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{'' if parts.port is None else f':{parts.port}'}/..."


def origin(url: str) -> tuple[str, str, int | None]:
    """The scheme, host and port of *url* (the default port filled in): where credentials may go.

    >>> origin("https://h.example/x") == origin("https://H.example:443/y"), origin("http://h.example/x")
    (True, ('http', 'h.example', 80))
    """
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


class PostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect of a POST only when the POST goes on whole: 307 or 308, to http(s); else ``HTTPError``.

    urllib would turn a 301, 302 or 303 into a GET without the body, and follow one to ``ftp://``.
    """

    #: The redirects that keep the method and the body (RFC 9110, 15.4).
    KEEP_BODY = (307, 308)
    SCHEMES = ("http", "https")

    def http_error_302(self, req, fp, code, msg, headers):  # type: ignore[no-untyped-def]
        # Decided before urllib's own checks, whose refusal message holds the whole Location.
        target = urljoin(req.full_url, headers.get("location") or headers.get("uri") or "")
        if code not in self.KEEP_BODY or urlsplit(target).scheme not in self.SCHEMES:
            raise urllib.error.HTTPError(req.full_url, code, f"{msg}; redirect to {where(target)} not followed: a POST "
                                         "follows only a 307 or 308 to http:// or https://", headers, fp)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        # urllib drops the body and the method on every redirect of a POST: keep both; the credentials go to
        # the webhook's own host only.
        headers = dict(req.headers)
        if origin(newurl) != origin(req.full_url):  # another host, port, or http after https
            headers.pop("Authorization", None)
        return urllib.request.Request(newurl, data=req.data, method=req.get_method(), headers=headers,
                                      origin_req_host=req.origin_req_host, unverifiable=True)


def basic_auth(url: str) -> tuple[str, dict[str, str]]:
    """*url* without its user info, and the ``Authorization`` header that sends it (urllib sends none itself).

    >>> basic_auth("https://hook:pw@example.com:8443/in?x=1")
    ('https://example.com:8443/in?x=1', {'Authorization': 'Basic aG9vazpwdw=='})
    >>> basic_auth("https://example.com/in")
    ('https://example.com/in', {})
    """
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    userinfo = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    plain = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return plain, {"Authorization": "Basic " + base64.b64encode(userinfo.encode()).decode()}


def post_result(url: str, payload: Any, *, timeout: float = 5, retries: int = 2, retry_delay: float = 1.0) -> bool:
    """POST *payload* as JSON (masked) to the http(s) webhook *url*; return whether it was delivered, never raise.

    Each attempt may take *timeout* seconds; *retries* more are made after connection errors, timeouts,
    HTTP 5xx and 429 (not after a 4xx answer), *retry_delay* seconds apart.
    """
    try:
        check_url(url)
    except ValueError as e:
        logger.error("Notification not sent: %s", e)
        return False
    attempts, (plain, credentials) = 0, basic_auth(url)

    def post() -> int:
        nonlocal attempts
        attempts += 1
        body = json.dumps(scrub(payload), default=json_default).encode()
        request = urllib.request.Request(plain, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "daskgif", **credentials})
        with urllib.request.build_opener(PostRedirects).open(request, timeout=timeout) as response:
            response.read()
            return response.status

    try:
        status = retry(post, RetryPolicy(retries, retry_delay, jitter=0), operation=f"POST to {where(url)}")
    except (OSError, ValueError) as e:
        logger.error("Notification to %s failed after %d attempt(s): %s", where(url), attempts, mask(str(e)))
        return False
    logger.info("Notification to %s delivered (HTTP %d)", where(url), status)
    return True
