"""Failed-login counting per username and per client address, with the `limits` library.

Only failures count, so a user who types their password right is never slowed down, while guessing
(one account from many addresses, or many accounts from one address) stops after the configured
number of failures in a moving window. The counts live in `Settings.rate_limit_storage_url`: Redis in
production, so every API worker process shares them; memory in the embedded mode (one process).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from backend.core.config import Settings


class LoginLimiter:
    def __init__(self, settings: Settings) -> None:
        assert settings.rate_limit_storage_url is not None  # filled in by Settings
        self._limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage_url))
        self._rules = [
            (parse(settings.login_failures_per_username), "login-username"),
            (parse(settings.login_failures_per_address), "login-address"),
        ]

    def check(self, username: str, address: str) -> None:
        """429 with Retry-After (the seconds until the oldest counted failure leaves the window) if
        this username or this address has used up its failed attempts."""
        waits = []
        for (rate, namespace), value in zip(self._rules, (username, address), strict=True):
            if not self._limiter.test(rate, namespace, value):
                reset = self._limiter.get_window_stats(rate, namespace, value).reset_time
                waits.append(max(1, math.ceil(reset - time.time())))
        if waits:
            raise HTTPException(
                status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"too many failed logins; try again in {max(waits)} s",
                headers={"Retry-After": str(max(waits))},
            )

    def failed(self, username: str, address: str) -> None:
        """Count one failed attempt against both the username and the address."""
        for (rate, namespace), value in zip(self._rules, (username, address), strict=True):
            self._limiter.hit(rate, namespace, value)


_lock = threading.Lock()


def get_login_limiter(request: Request) -> LoginLimiter:
    """The app's limiter, built on first use from its settings (one per app, so tests do not share counts)."""
    state = request.app.state
    with _lock:
        if getattr(state, "login_limiter", None) is None:
            state.login_limiter = LoginLimiter(state.settings)
        return state.login_limiter


LoginLimiterDep = Annotated[LoginLimiter, Depends(get_login_limiter)]


def client_address(request: Request) -> str:
    """The peer's address (behind a proxy: what uvicorn's --proxy-headers makes of X-Forwarded-For)."""
    return request.client.host if request.client else "unknown"
