"""The one masking rule: URL userinfo and credential query parameters, in any text and channel."""

from __future__ import annotations

import io
import json
import logging
import pickle
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from daskgif.redact import (SECRET_PARAMETERS, MaskingFilter, json_default, mask, mask_secrets_of,
                            safe_parameters, scrub)

# Characters a URL may hold unencoded in its userinfo (RFC 3986 unreserved, sub-delims but
# the quote, percent) plus "@" and ":" that people paste unencoded into passwords anyway.
PASSWORD_CHARS = string.ascii_letters + string.digits + "-._~!$&()*+,;=%@:"
USER_CHARS = string.ascii_letters + string.digits + "-._~!$&()*+,;=%"
QUERY_CHARS = string.ascii_letters + string.digits + "-._~!$()*+,;=%/:@?"

passwords = st.text(PASSWORD_CHARS, min_size=6, max_size=40)
tokens = st.text(USER_CHARS + "@", min_size=6, max_size=40)
users = st.text(USER_CHARS, min_size=1, max_size=12)
values = st.text(QUERY_CHARS, min_size=6, max_size=60)

EMBEDDINGS = [
    "{}",
    "cannot fetch {}: HTTP 404",
    "Retrying fetch after ClientResponseError(RequestInfo(url=URL('{}')), status=503) (attempt 1/3)",
    'FileNotFoundError: "{}"',
    "see <{}> then\n{}\tagain",
]


def embed(template: str, url: str) -> str:
    return template.replace("{}", url)


@pytest.mark.parametrize(("text", "expected"), [
    ("http://s3cr3tTOKEN@host/x", "http://***@host/x"),
    ("http://alice:p@ss@host/x", "http://alice:***@host/x"),
    ("http://alice:p:ss@host/x", "http://alice:***@host/x"),
    ("https://alice:pw@host", "https://alice:***@host"),
    ("https://alice:pw@host:8443/x?y#z", "https://alice:***@host:8443/x?y#z"),
    ("s3://AKIA:wJalr@bucket/key", "s3://AKIA:***@bucket/key"),
    ("url='http://u:p@h'", "url='http://u:***@h'"),
    ('url="http://tok@h"', 'url="http://***@h"'),
    ("https://host/path@not-userinfo", "https://host/path@not-userinfo"),
    ("https://host?x=a@b", "https://host?x=a@b"),
    ("https://host#frag@x", "https://host#frag@x"),
    ("mailto-like bob@example.com", "mailto-like bob@example.com"),
    ("https://h/x?token=abc", "https://h/x?token=***"),
    ("https://h/x?Token=abc&sig=d&signature=e&password=f&secret=g&client_secret=h&key=i",
     "https://h/x?Token=***&sig=***&signature=***&password=***&secret=***&client_secret=***&key=***"),
    ("https://storage.googleapis.com/b/o?X-Goog-Credential=sa%2F1&X-Goog-Signature=00ff&X-Goog-Date=1",
     "https://storage.googleapis.com/b/o?X-Goog-Credential=***&X-Goog-Signature=***&X-Goog-Date=1"),
    ("https://h/x?mykey=1&keyring=2&tokens=3", "https://h/x?mykey=1&keyring=2&tokens=3"),
    ("<a href='https://h/x?a=1&amp;sig=2'>", "<a href='https://h/x?a=1&amp;sig=***'>"),
    ("s3://key:se:cr@t@bucket", "s3://key:***@bucket"),
    ("ftp://alice:pw@host:21", "ftp://alice:***@host:21"),
    ("https://:pw@host?q=1", "https://:***@host?q=1"),
    ("https://host/users/bob@example.com and mail@example.com",
     "https://host/users/bob@example.com and mail@example.com"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc&x-amz-security-token=t",
     "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&x-amz-security-token=***"),
    ("https://a.blob.core.windows.net/c/x?sv=2020&sig=abc%3D&se=1",
     "https://a.blob.core.windows.net/c/x?sv=2020&sig=***&se=1"),
    ("https://h/x?API_KEY=1&keys=2&apikey=3#access_token=4",
     "https://h/x?API_KEY=***&keys=2&apikey=***#access_token=***"),
    ("ClientResponseError(..., url=URL('http://a:b@h/'))", "ClientResponseError(..., url=URL('http://a:***@h/'))"),
    ("no URL here: user@example.com, a=b", "no URL here: user@example.com, a=b"),
    ("https://host/x?X-Amz-Signature=abc", "https://host/x?X-Amz-Signature=***"),
    ("", ""),
])
def test_mask(text, expected):
    assert mask(text) == expected
    assert mask(mask(text)) == expected


@pytest.mark.parametrize("name", SECRET_PARAMETERS)
def test_every_secret_parameter_in_any_case(name):
    for spelled in (name, name.lower(), name.upper()):
        assert mask(f"https://h/x?a=1&{spelled}=SECRET&b=2") == f"https://h/x?a=1&{spelled}=***&b=2"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(user=users, password=passwords, template=st.sampled_from(EMBEDDINGS),
       scheme=st.sampled_from(["http", "https", "s3", "ftp", "git+ssh"]))
def test_a_password_never_shows(user, password, template, scheme):
    assume(password not in embed(template, f"{scheme}://{user}:@host.example/x.img"))
    text = embed(template, f"{scheme}://{user}:{password}@host.example/x.img")
    masked = mask(text)
    assert password not in masked
    assert f"{scheme}://{user}:***@host.example/x.img" in masked


@settings(max_examples=300)
@given(token=tokens, template=st.sampled_from(EMBEDDINGS))
def test_a_token_as_user_name_never_shows(token, template):
    assume(token not in embed(template, "https://@host.example:8080"))
    masked = mask(embed(template, f"https://{token}@host.example:8080"))
    assert token not in masked and "https://***@host.example:8080" in masked


@settings(max_examples=300)
@given(value=values, name=st.sampled_from(SECRET_PARAMETERS), template=st.sampled_from(EMBEDDINGS),
       first=st.booleans())
def test_a_query_credential_never_shows(value, name, template, first):
    def query(given: str) -> str:
        return f"{name}={given}&X-Amz-Date=20260101" if first else f"X-Amz-Date=20260101&{name}={given}"

    assume(value not in embed(template, "https://bucket.s3.amazonaws.com/k.img?" + query("")))  # e.g. secret=secret
    masked = mask(embed(template, "https://bucket.s3.amazonaws.com/k.img?" + query(value)))
    assert value not in masked and f"{name}=***" in masked


def test_scrub_walks_containers():
    data = {"url": "http://tok@h/x", "states": [("http://u:p@h", 1)], "n": None, "ok": True, "t": 1.5}
    assert scrub(data) == {"url": "http://***@h/x", "states": [["http://u:***@h", 1]], "n": None, "ok": True, "t": 1.5}


def test_safe_parameters_drop_storage_options_and_callables():
    params = {"url": "http://tok@h/x?sig=1", "storage_options": {"key": "K", "secret": "S"},
              "on_state": print, "retries": 2, "delimiter": b"\n"}
    assert safe_parameters(params) == {"url": "http://***@h/x?sig=***", "retries": 2, "delimiter": "\n"}


def test_json_default_masks_objects():
    line = json.dumps({"error": ValueError("bad http://s3cr3tTOKEN@h")}, default=json_default)
    assert "s3cr3tTOKEN" not in line and "***@h" in line


@pytest.fixture()
def masked_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("daskgif.test_redact")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_filter_masks_message_arguments_and_traceback(masked_log):
    logger, stream = masked_log
    logger.warning("fetch %s failed: %r", "http://s3cr3tTOKEN@h/x", OSError("http://u:hunter2@h?sig=SIG"))
    try:
        raise ConnectionError("url=URL('http://alice:p@ss@host/x')")
    except ConnectionError:
        logger.exception("Run FAILED at https://h/x?X-Amz-Signature=SIGNATURE")
    text = stream.getvalue()
    for secret in ("s3cr3tTOKEN", "hunter2", "SIG&", "=SIG", "p@ss", "SIGNATURE"):
        assert secret not in text
    assert "Traceback" in text and "ConnectionError" in text and "alice:***@host" in text


def test_filter_keeps_every_record_and_pickles():
    record = logging.LogRecord("daskgif", logging.INFO, __file__, 1, "%d frames from %s", (3, "http://t@h"), None)
    assert MaskingFilter().filter(record) is True and record.getMessage() == "3 frames from http://***@h"
    pickle.loads(pickle.dumps(MaskingFilter()))


def test_mask_stays_linear_on_long_adversarial_text():
    # Near-misses of every pattern, a megabyte of them: a backtracking pattern would not end
    # within the suite's timeout (pyproject's ``timeout``); a linear one ends in milliseconds.
    text = ("http://" + "a" * 10_000 + " ") * 100 + "x=y&" * 10_000 + " https://user:secret@host/x?token=abc"
    masked = mask(text)
    assert masked.endswith("https://user:***@host/x?token=***")
    assert "secret" not in masked and masked[:1_000] == text[:1_000]


def test_a_library_error_quoting_the_credentials_of_its_url_shows_none():
    url = "s3://AKIAXX:PWFSECRET@bucket/a.img?X-Amz-Signature=S1GNATURE"
    said = 'Invalid bucket name "AKIAXX:PWFSECRET@bucket": ... (signature S1GNATURE)'
    assert mask_secrets_of(url, said) == 'Invalid bucket name "AKIAXX:***@bucket": ... (signature ***)'
    assert mask_secrets_of("https://h/x", "ok: https://u:pw@h/x") == "ok: https://u:***@h/x"  # mask's rule too
