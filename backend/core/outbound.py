"""Requests the engine makes to URLs its users give (webhooks, image imports): public hosts only.

A manager who may register a webhook or import images from URLs must not make the server reach what
only the server can reach: its own loopback services, the private network behind it, the cloud
metadata endpoint (169.254.169.254). So every such request goes through `outbound_client`, whose
transport resolves the host itself, refuses the request when any address it resolves to is not a
global one (unless `Settings.outbound_allowed_networks` lists its network), and then connects to that
very address, so a DNS answer that changes between the check and the connection (rebinding) cannot
slip through. TLS still verifies the certificate against the URL's host name (sent as SNI), and each
redirect hop is a new request through the same check. `check_target` gives the same verdict up front,
so a hook or an import that can never work is refused with a 422 when it is created.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedTarget(ValueError):
    """The URL's host is not one the engine may reach (private, loopback, link-local, unresolvable)."""


def allowed_address(address: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    """A global unicast address, or one inside a network the operator allowed."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if any(address in network for network in allowed):
        return True
    return address.is_global and not address.is_multicast


def resolve_checked(host: str, port: int, allowed: Sequence[IPNetwork]) -> IPAddress:
    """The first address of `host`, after checking that every address it resolves to is allowed
    (a host that resolves to one public and one private address is refused: which one a client
    picks is not ours to decide)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise BlockedTarget(f"cannot resolve host {host!r}: {error}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise BlockedTarget(f"host {host!r} has no address")
    for address in addresses:
        if not allowed_address(address, allowed):
            raise BlockedTarget(
                f"host {host!r} resolves to {address}, a private or reserved address the engine does not "
                "reach (an operator can allow its network in DATAENGINE_OUTBOUND_ALLOWED_NETWORKS)"
            )
    return addresses[0]


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def check_target(url: str, allowed: Sequence[IPNetwork]) -> None:
    """Raise `BlockedTarget` unless `url` is http(s) and its host resolves to allowed addresses only."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BlockedTarget(f"not an http(s) URL: {url[:200]!r}")
    resolve_checked(parsed.host, _port(parsed), allowed)


class _CheckedTransport(httpx.HTTPTransport):
    """Connects each request to the address `resolve_checked` approved, keeping Host and SNI."""

    def __init__(self, allowed: Sequence[IPNetwork], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._allowed = list(allowed)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        address = resolve_checked(host, _port(request.url), self._allowed)
        request.url = request.url.copy_with(host=str(address))  # the Host header keeps the name
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return super().handle_request(request)


def outbound_client(allowed: Sequence[IPNetwork], **kwargs: Any) -> httpx.Client:
    """An httpx client for user-given URLs; `kwargs` go to `httpx.Client` (timeout, redirects).

    A refused host raises `BlockedTarget` from the request (also for a redirect to such a host)."""
    return httpx.Client(transport=_CheckedTransport(allowed), **kwargs)
