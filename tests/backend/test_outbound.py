"""Webhooks and URL imports reach public hosts only (backend/core/outbound.py): the server's own
loopback, private networks and the cloud metadata address are refused up front (422) and again at
request time (redirects included), unless the operator allows the network."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.core.outbound import BlockedTarget, check_target, outbound_client

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


class Server:
    """127.0.0.1: `/ok` answers with the Host header it saw; `/away` redirects to a private address."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/away":
                    self.send_response(302)
                    self.send_header("Location", "http://10.255.255.1/secret")
                    self.end_headers()
                    return
                body = (self.headers["Host"] or "").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.http.shutdown()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://no-such-host.invalid/hook",
        "ftp://8.8.8.8/file",
    ],
)
def test_private_and_unresolvable_targets_are_refused(url):
    with pytest.raises(BlockedTarget):
        check_target(url, [])


def test_public_addresses_and_allowed_networks_pass():
    check_target("https://8.8.8.8/hook", [])
    check_target("http://127.0.0.1:8000/hook", LOOPBACK)


def test_requests_connect_to_the_checked_address_and_keep_the_host_name(server):
    with outbound_client(LOOPBACK, timeout=5) as client:
        response = client.get(f"http://localhost:{server.port}/ok")
    assert response.status_code == 200
    assert response.text == f"localhost:{server.port}"  # the name travels in Host, the IP was dialled
    with outbound_client([], timeout=5) as client, pytest.raises(BlockedTarget):
        client.get(f"http://127.0.0.1:{server.port}/ok")


def test_a_redirect_to_a_private_address_is_refused(server):
    with outbound_client(LOOPBACK, timeout=5, follow_redirects=True) as client, pytest.raises(BlockedTarget) as error:
        client.get(f"http://127.0.0.1:{server.port}/away")
    assert "10.255.255.1" in str(error.value)


@pytest.fixture
def public_only(settings):
    """The product's default: no private network allowed (the suite's fixture allows loopback)."""
    settings.outbound_allowed_networks = []
    return settings


def test_the_api_refuses_private_webhooks_and_url_imports(public_only, client, project, manager_headers):
    hook = client.post(
        f"/api/projects/{project.id}/webhooks",
        json={"url": "http://169.254.169.254/latest/meta-data/", "events": ["job.succeeded"]},
        headers=manager_headers,
    )
    assert hook.status_code == 422 and "169.254.169.254" in hook.json()["detail"], hook.text
    imported = client.post(
        f"/api/projects/{project.id}/images/from-urls",
        json={"urls": ["https://8.8.8.8/a.jpg", "http://127.0.0.1:9/b.jpg"]},
        headers=manager_headers,
    )
    assert imported.status_code == 422 and "127.0.0.1" in imported.json()["detail"], imported.text
    listed = client.get(f"/api/projects/{project.id}/webhooks", headers=manager_headers).json()
    assert listed == []
