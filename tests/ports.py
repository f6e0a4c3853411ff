"""The one helper the test servers (live app, `dataengine up`, moto's S3, the model service, the
no-shared-disk processes) pick their loopback port with."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; a server started next binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
