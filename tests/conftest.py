"""Fixtures shared by daskgif's tests: a real HTTP server and a real S3 server on 127.0.0.1.

No test reaches the network; both servers run in background threads of the
test process and are shut down cleanly.

Hypothesis runs under the ``ci`` profile unless ``HYPOTHESIS_PROFILE`` names
another (``HYPOTHESIS_PROFILE=explore pytest`` looks for new failures with random
examples).  It is the default, not only CI's, because CI runs the README's plain
``pytest`` and a user's fresh clone runs the same: neither may fail by chance.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import HealthCheck, settings

# Loaded here, before any test module is imported: a test's own @settings(...) inherits what it
# does not set from the profile loaded when it is decorated.
# ci: the same examples on every run (derandomize implies no example database), and no check
# that depends on how busy the machine is (deadline, too_slow).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
# explore: random examples, saved to .hypothesis/ when they fail; for looking, not for CI.
settings.register_profile("explore", derandomize=False, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass
class Route:
    """What the test HTTP server answers on one path (see :class:`HTTPServer`)."""

    body: bytes | None = None
    content_length: bool = True
    fail_status: int = 0
    fail_times: int = 0
    stall_seconds: float = 0.0
    stall_after: int = 0
    reset_after: int = 0
    reset_times: int = 0
    location: str = ""
    redirect_status: int = 302
    etag: str | None = None
    last_modified: str | None = None
    declared_length: int | None = None
    trickle_bytes: int = 0
    trickle_interval: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no idle keep-alive thread outlives a test.
    protocol_version = "HTTP/1.0"
    timeout = 30
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    def _route(self, method: str) -> Route | None:
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        with owner.lock:
            owner.requests.append((method, path))
            route = owner.routes.get(path)
            if route is not None and route.fail_times > 0:
                route.fail_times -= 1
                status = route.fail_status
            else:
                status = 0
        if status:
            self.send_error(status)
        elif route is not None and route.location:
            self.send_response(route.redirect_status)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route is None or (route.body is None and method != "POST"):
            self.send_error(404)
        else:
            return route
        return None

    def _headers(self, route: Route) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if route.declared_length is not None:
            self.send_header("Content-Length", str(route.declared_length))
        elif route.content_length:
            self.send_header("Content-Length", str(len(route.body or b"")))
        if route.etag is not None:
            self.send_header("ETag", route.etag)
        if route.last_modified is not None:
            self.send_header("Last-Modified", route.last_modified)
        self.end_headers()

    def do_HEAD(self) -> None:
        route = self._route("HEAD")
        if route is not None:
            self._headers(route)

    def do_GET(self) -> None:
        owner = self.server.owner
        with owner.lock:  # how many GETs are answered at once: the most is kept
            owner.active += 1
            owner.max_active = max(owner.max_active, owner.active)
        try:
            self._get()
        finally:
            with owner.lock:
                owner.active -= 1

    def _get(self) -> None:
        route = self._route("GET")
        if route is None:
            return
        body = route.body or b""
        with self.server.owner.lock:
            reset = route.reset_times > 0
            route.reset_times -= reset
        self._headers(route)
        if reset:
            self.wfile.write(body[: route.reset_after])
            self.wfile.flush()
            # SO_LINGER 0: closing sends RST instead of FIN, like a dropped connection.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.rfile.close()
            self.close_connection = True
            return
        if route.trickle_bytes:
            try:
                for start in range(0, len(body), route.trickle_bytes):
                    self.wfile.write(body[start : start + route.trickle_bytes])
                    self.wfile.flush()
                    if self.server.owner.stopping.wait(route.trickle_interval):
                        break
            except OSError:  # the client gave up
                pass
            return
        if route.stall_seconds:
            self.wfile.write(body[: route.stall_after])
            self.wfile.flush()
            self.server.owner.stopping.wait(route.stall_seconds)
            body = body[route.stall_after :]
        try:
            self.wfile.write(body)
        except OSError:  # the client gave up during a stall
            pass

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        try:
            payload = json.loads(data)
        except ValueError:
            payload = data
        with owner.lock:
            owner.posts.append((path, payload))
            owner.authorizations.append((path, self.headers.get("Authorization")))
            route = owner.routes.setdefault(path, Route(body=b"ok"))
        # _route records the request and applies any configured failure.
        route = self._route("POST")
        if route is not None:
            self._headers(route)
            self.wfile.write(route.body or b"")


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins every handler thread
    owner: HTTPServer


class HTTPServer:
    """A real HTTP server on 127.0.0.1 with a tiny routing API, for tests.

    Every path answers 404 until it is given a body.  Requests are served in threads,
    one request per connection (HTTP/1.0).

    Attributes
    ----------
    requests : list of (str, str)
        ``(method, path)`` of every request received, in order.
    posts : list of (str, object)
        ``(path, body)`` of every POST; the body is parsed JSON when it is
        JSON, else the raw bytes.  A POST to an unconfigured path answers 200.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str]] = []
        self.posts: list[tuple[str, object]] = []
        self.authorizations: list[tuple[str, str | None]] = []  # each POST's Authorization header
        self.active = self.max_active = 0  # GETs being answered now, and the most at once
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="test-http-server"
        )
        self._thread.start()

    def url(self, path: str) -> str:
        """The URL of *path* (which starts with ``/``) on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: bytes, *, content_length: bool = True) -> str:
        """Answer GET *path* with 200 and *body*; return its URL.

        With ``content_length=False`` no length is sent and the body ends when
        the connection closes.
        """
        with self.lock:
            self.routes[path] = Route(body=body, content_length=content_length)
        return self.url(path)

    def _route(self, path: str) -> Route:
        return self.routes.setdefault(path, Route())

    def fail(self, path: str, status: int, times: int = 1) -> str:
        """Answer *path* with *status* the next *times* requests, then as before; return its URL."""
        with self.lock:
            route = self._route(path)
            route.fail_status, route.fail_times = status, times
        return self.url(path)

    def stall(self, path: str, seconds: float, after_bytes: int = 0) -> str:
        """Send the headers and *after_bytes* of the body of *path*, then go quiet for *seconds*.

        The stall ends early when the server shuts down.  Return the URL.
        """
        with self.lock:
            route = self._route(path)
            route.stall_seconds, route.stall_after = seconds, after_bytes
        return self.url(path)

    def reset(self, path: str, after_bytes: int, times: int = 1) -> str:
        """Send *after_bytes* of the body of *path*, then drop the connection (TCP RST).

        Applies to the next *times* GET requests; later ones get the whole
        body.  Return the URL.
        """
        with self.lock:
            route = self._route(path)
            route.reset_after, route.reset_times = after_bytes, times
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        """Answer *path* with *status* and ``Location: location``; return its URL."""
        with self.lock:
            route = self._route(path)
            route.location, route.redirect_status = location, status
        return self.url(path)

    def validators(self, path: str, etag: str | None = None, last_modified: str | None = None) -> str:
        """Send ``ETag`` and ``Last-Modified`` headers (on GET and HEAD) for *path*; return its URL."""
        with self.lock:
            route = self._route(path)
            route.etag, route.last_modified = etag, last_modified
        return self.url(path)

    def declare_length(self, path: str, length: int) -> str:
        """Send ``Content-Length: length`` for *path*, whatever its body's length; return its URL.

        A body shorter than *length* ends with the connection.
        """
        with self.lock:
            self._route(path).declared_length = length
        return self.url(path)

    def trickle(self, path: str, nbytes: int, interval: float) -> str:
        """Send the body of *path* *nbytes* at a time, one piece every *interval* seconds; return its URL."""
        with self.lock:
            route = self._route(path)
            route.trickle_bytes, route.trickle_interval = nbytes, interval
        return self.url(path)

    def hits(self, path: str, method: str = "GET") -> int:
        """Number of *method* requests received for *path*."""
        with self.lock:
            return self.requests.count((method, path))

    def close(self) -> None:
        """Stop serving, wake stalled handlers and join every thread."""
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture
def http_server():
    """A fresh :class:`HTTPServer` on 127.0.0.1 (random port), closed after the test.

    Usage::

        def test_x(http_server):
            url = http_server.serve("/data.img", b"bytes")
            http_server.fail("/data.img", 503, times=2)   # two 503s, then the body
            http_server.stall("/slow.img", seconds=30)    # headers, then silence
            http_server.reset("/cut.img", after_bytes=10) # 10 bytes, then RST
            http_server.redirect("/old.img", "https://127.0.0.1:1/new.img")  # 302 there
            http_server.validators("/data.img", etag='"v1"', last_modified="...")
            http_server.declare_length("/data.img", 10**12)  # a Content-Length that lies
            http_server.trickle("/data.img", 1000, 0.2)  # 1000 bytes every 0.2 s
            assert http_server.hits("/data.img") == 3
            http_server.posts                              # [(path, json or bytes), ...]
    """
    server = HTTPServer()
    try:
        yield server
    finally:
        server.close()


@dataclass
class S3Server:
    """A moto S3 server on 127.0.0.1 (see the ``s3_server`` fixture)."""

    endpoint_url: str
    storage_options: dict


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on 127.0.0.1, for the whole session.

    Gives ``endpoint_url`` and ``storage_options`` (endpoint, dummy key and
    secret) to pass to fsspec/daskgif; the ``AWS_*`` variables are set to the
    same dummy values while it runs.  Use the ``s3_bucket`` fixture for a
    fresh bucket per test.
    """
    import s3fs
    import moto.server as moto_server
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint_url = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        try:
            yield S3Server(
                endpoint_url=endpoint_url,
                storage_options={
                    "key": "testing",
                    "secret": "testing",
                    "client_kwargs": {"endpoint_url": endpoint_url},
                },
            )
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_server, request):
    """A fresh, empty bucket on ``s3_server``; gives its URL, ``"s3://<bucket>"``."""
    import re
    import uuid

    import s3fs

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    fs = s3fs.S3FileSystem(**s3_server.storage_options)
    fs.mkdir(bucket)
    fs.invalidate_cache()
    return f"s3://{bucket}"


@pytest.fixture(autouse=True)
def _in_a_fresh_folder(tmp_path_factory, monkeypatch):
    """Every test runs in a folder of its own: none writes into the checkout, none depends on what is there."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
