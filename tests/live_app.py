"""The app of this checkout served for real on a free loopback port, with an admin: for the browser
tests and the benchmarks that drive a page (benchmarks/image_switch.py).

`live_app(settings)` migrates the settings' database, adds the admin `ADMIN`, runs `create_app` under
uvicorn in a thread of this process, logs the admin in, and yields the URL with the admin's token;
leaving the block stops the server.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import uvicorn

from backend.core.config import Settings
from backend.core.db import make_engine, make_session_factory
from backend.core.migrations import upgrade
from backend.core.security import hash_password
from backend.main import create_app
from backend.tables import Role, User
from tests.ports import free_port

ADMIN = ("admin", "admin password 1")
START_SECONDS = 30


@dataclass(frozen=True)
class LiveApp:
    url: str
    token: str  # the admin's bearer token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextlib.contextmanager
def live_app(settings: Settings) -> Iterator[LiveApp]:
    """The app on a free port with a fresh admin; RuntimeError if it does not start in time."""
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    with make_session_factory(engine)() as db:
        db.add(User(username=ADMIN[0], password_hash=hash_password(ADMIN[1], rounds=4), role=Role.admin))
        db.commit()
    engine.dispose()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the live app did not start on port {port}")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        login = httpx.post(f"{url}/api/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]}, timeout=60)
        yield LiveApp(url, login.raise_for_status().json()["access_token"])
    finally:
        server.should_exit = True
        thread.join(timeout=30)
