"""SSRF rules for URLs the server fetches on a user's behalf (core/egress.py), on real sockets:
HTTP servers on loopback addresses stand in for internal services."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.egress import EgressPolicy, EgressRefused, fetch, vet

Serve = Callable[..., str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """An HTTP server on `host` answering 200 `internal`, or redirecting to `redirect_to`."""
    servers: list[ThreadingHTTPServer] = []

    def start(host: str = "127.0.0.1", redirect_to: str | None = None) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.end_headers()
                    return
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"internal")

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer((host, 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://{host}:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_loopback_is_refused_by_address_and_by_name(serve: Serve) -> None:
    url = serve()
    port = url.rsplit(":", 1)[1]
    for target in [
        url,
        f"http://localhost:{port}",
        f"http://2130706433:{port}",
        f"http://0x7f.1:{port}",
    ]:
        with pytest.raises(EgressRefused):
            fetch(target, EgressPolicy())


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
        "file:///etc/passwd",
        "gopher://127.0.0.1/",
        "http://user:pass@example.com/",
        "http:///no-host",
    ],
)
def test_internal_and_odd_destinations_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(EgressRefused):
        vet(url, EgressPolicy())


def test_an_allowed_destination_is_fetched(serve: Serve) -> None:
    url = serve("127.0.0.2")
    fetched = fetch(url, EgressPolicy.allowing(["127.0.0.2/32"]))
    assert (fetched.status, fetched.body) == (200, b"internal")


def test_each_redirect_is_checked_again(serve: Serve) -> None:
    internal = serve("127.0.0.1")
    bouncer = serve("127.0.0.2", redirect_to=internal)
    policy = EgressPolicy.allowing(["127.0.0.2/32"])  # the first hop is allowed; its target not
    with pytest.raises(EgressRefused, match=r"127\.0\.0\.1"):
        fetch(bouncer, policy)


def test_redirects_are_bounded(serve: Serve) -> None:
    first = serve("127.0.0.3", redirect_to=serve("127.0.0.4"))
    policy = EgressPolicy.allowing(["127.0.0.0/8"], max_redirects=0)
    with pytest.raises(EgressRefused, match="redirects"):
        fetch(first, policy)
