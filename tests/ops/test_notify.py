"""Webhook notifications against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from daskgif.ops.notify import check_url, post_result


def test_posts_json(http_server):
    url = http_server.url("/hook")
    assert post_result(url, {"ok": True, "run": 1, "out": "clip.gif"}, retry_delay=0) is True
    assert http_server.posts == [("/hook", {"ok": True, "run": 1, "out": "clip.gif"})]


def test_a_webhook_answering_500_once_is_retried(http_server, caplog):
    url = http_server.fail("/hook", 500, times=1)
    with caplog.at_level(logging.WARNING, logger="daskgif.ops.notify"):
        assert post_result(url, {"ok": False}, retries=2, retry_delay=0) is True
    assert http_server.hits("/hook", "POST") == 2
    assert [payload for _, payload in http_server.posts] == [{"ok": False}, {"ok": False}]
    assert "Retrying POST to http://127.0.0.1" in caplog.text and "(attempt 1/3)" in caplog.text


def test_a_webhook_that_keeps_failing_is_logged_not_raised(http_server, caplog):
    url = http_server.fail("/hook", 503, times=10)
    with caplog.at_level(logging.WARNING, logger="daskgif.ops.notify"):
        assert post_result(url, {"ok": True}, retries=2, retry_delay=0) is False
    assert http_server.hits("/hook", "POST") == 3
    assert "failed after 3 attempt(s)" in caplog.text and "503" in caplog.text


def test_a_4xx_answer_is_not_retried(http_server, caplog):
    url = http_server.fail("/hook", 403, times=5)
    with caplog.at_level(logging.ERROR, logger="daskgif.ops.notify"):
        assert post_result(url, {"ok": True}, retries=3, retry_delay=0) is False
    assert http_server.hits("/hook", "POST") == 1 and "403" in caplog.text


def test_a_webhook_that_is_down(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port any more: connection refused, retried, then logged.
    with caplog.at_level(logging.WARNING, logger="daskgif.ops.notify"):
        assert post_result(f"http://127.0.0.1:{port}/hook", {"ok": True}, retries=1, retry_delay=0) is False
    assert "Retrying POST" in caplog.text and "failed after 2 attempt(s)" in caplog.text


def test_a_webhook_that_never_answers_times_out():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()  # accepted by the kernel, never answered
        assert post_result(f"http://127.0.0.1:{s.getsockname()[1]}/x", {}, timeout=0.2, retries=1, retry_delay=0) is False


def test_secret_path_is_not_logged(http_server, caplog):
    url = http_server.fail("/services/T0/very-secret", 500, times=5)
    with caplog.at_level(logging.WARNING, logger="daskgif.ops.notify"):
        post_result(url, {}, retries=1, retry_delay=0)
    assert caplog.text and "very-secret" not in caplog.text


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/x", "http://", "hooks.example.com", None])
def test_only_http_urls(url, caplog):
    with pytest.raises(ValueError, match="notify must be an http:// or https:// URL"):
        check_url(url)
    assert post_result(url, {}) is False and "Notification not sent" in caplog.text


def test_the_body_never_holds_a_secret(http_server):
    url = http_server.url("/hook")
    payload = {"ok": False, "message": "cannot fetch http://s3cr3tTOKEN@host/x: 404",
               "parameters": {"url": "https://alice:p@ss@host/x?sig=s1g"}, "error": OSError("http://t0ken@h")}
    assert post_result(url, payload, retry_delay=0) is True
    [(_, body)] = http_server.posts
    text = json.dumps(body)
    for secret in ("s3cr3tTOKEN", "p@ss", "s1g", "t0ken"):
        assert secret not in text
    assert body["message"] == "cannot fetch http://***@host/x: 404"
    assert body["parameters"]["url"] == "https://alice:***@host/x?sig=***"


def test_a_token_in_the_webhook_url_is_not_logged(http_server, caplog):
    url = http_server.fail("/hook", 500, times=5).replace("http://", "http://s3cr3tTOKEN@")
    with caplog.at_level(logging.WARNING, logger="daskgif.ops.notify"):
        post_result(url, {}, retries=1, retry_delay=0)
    assert caplog.text and "s3cr3tTOKEN" not in caplog.text


def test_a_refused_url_is_masked_in_the_error(caplog):
    with pytest.raises(ValueError) as info:
        check_url("ftp://s3cr3tTOKEN@host/x")
    assert "s3cr3tTOKEN" not in str(info.value) and "ftp://***@host/x" in str(info.value)
    assert post_result("ftp://s3cr3tTOKEN@host/x", {}) is False and "s3cr3tTOKEN" not in caplog.text


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_that_would_drop_the_body_is_not_followed(http_server, caplog, status):
    target = http_server.serve("/new", b"ok")  # a GET there would answer 200
    url = http_server.redirect("/hook", target, status)
    with caplog.at_level(logging.WARNING, logger="daskgif.ops.notify"):
        assert post_result(url, {"ok": True}, retries=2, retry_delay=0) is False
    assert http_server.requests == [("POST", "/hook")]  # not retried, and never sent on as a GET
    assert f"HTTP Error {status}" in caplog.text and "not followed" in caplog.text


@pytest.mark.parametrize("status", [307, 308])
def test_a_307_or_308_redirect_is_followed_with_the_body(http_server, status):
    url = http_server.redirect("/hook", http_server.url("/new"), status)
    assert post_result(url, {"ok": True, "run": 2}, retry_delay=0) is True
    assert http_server.requests == [("POST", "/hook"), ("POST", "/new")]
    assert http_server.posts == [("/hook", {"ok": True, "run": 2}), ("/new", {"ok": True, "run": 2})]


@pytest.mark.parametrize("status", [302, 307, 308])
@pytest.mark.parametrize("location", ["ftp://127.0.0.1:1/hook", "file:///etc/passwd"])
def test_a_redirect_to_another_protocol_is_refused(http_server, caplog, status, location):
    url = http_server.redirect("/hook", location, status)
    with caplog.at_level(logging.WARNING, logger="daskgif.ops.notify"):
        assert post_result(url, {"ok": True}, retries=2, retry_delay=0) is False
    assert http_server.requests == [("POST", "/hook")]  # refused at once: nothing to retry, no connection tried
    assert "Retrying" not in caplog.text and "failed after 1 attempt(s)" in caplog.text
    assert "/etc/passwd" not in caplog.text  # the Location's path stays out of the log, like the webhook's


def test_a_webhook_with_credentials_in_its_url_gets_them_as_basic_auth_on_its_host_only(http_server, caplog):
    hook = http_server.url("/hook").replace("http://", "http://hook%40me:p%3Aw@")
    assert post_result(hook, {"ok": True}, retry_delay=0) is True
    elsewhere = http_server.url("/new").replace("127.0.0.1", "localhost")  # another host, the same server
    moved = http_server.redirect("/moved", elsewhere, 307).replace("http://", "http://hook:pw@")
    assert post_result(moved, {"ok": True}, retry_delay=0) is True
    assert http_server.authorizations == [("/hook", "Basic aG9va0BtZTpwOnc="),  # hook@me:p:w
                                          ("/moved", "Basic aG9vazpwdw=="), ("/new", None)]
    assert "p:w" not in caplog.text and "pw" not in caplog.text


@pytest.mark.parametrize("target, kept", [("https://h.example/new", True), ("https://h.example:443/new", True),
                                          ("http://h.example/new", False), ("https://h.example:8443/new", False),
                                          ("https://other.example/new", False)])
def test_the_credentials_follow_a_redirect_only_to_the_same_scheme_host_and_port(target, kept):
    import urllib.request

    from daskgif.ops.notify import PostRedirects

    request = urllib.request.Request("https://h.example/hook", data=b"{}", method="POST",
                                     headers={"Authorization": "Basic aG9vazpwdw=="})
    moved = PostRedirects().redirect_request(request, None, 307, "Temporary Redirect", {}, target)
    assert moved.get_method() == "POST" and moved.data == b"{}"
    assert moved.has_header("Authorization") is kept
