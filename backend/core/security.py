"""Password hashing (bcrypt) and signed tokens (JWT, HS256 by default).

Every token names its `purpose`, so a token minted for one use is refused for any other: an `access`
token (the bearer token of the API) is not a `job-events` ticket (the short-lived credential that the
browser's EventSource puts in a URL), and a ticket is not an access token. Every token also carries
the user's `token_version` (`ver`) at the time it was minted; bumping the version on the user row
(password change, deactivation, "log out everywhere") revokes every token minted before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
import jwt

# bcrypt only looks at the first 72 bytes; longer passwords are refused rather than silently truncated.
MAX_PASSWORD_BYTES = 72

ACCESS = "access"
JOB_EVENTS = "job-events"


def hash_password(password: str, rounds: int = 12) -> str:
    """bcrypt hash of `password` (utf-8), as an ASCII string for the `users.password_hash` column.

    The API and CLI validate passwords in their schema first (`backend.users.schemas`); the checks
    here only keep a caller that skipped it from storing a silently truncated password."""
    data = password.encode()
    if not data:
        raise ValueError("password must not be empty")
    if len(data) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """True if `password` matches; False for any malformed input instead of raising."""
    data = password.encode()
    if not data or len(data) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(data, password_hash.encode("ascii"))
    except ValueError:
        return False


def _encode(claims: dict[str, Any], lifetime: timedelta, secret_key: str, algorithm: str) -> str:
    now = datetime.now(UTC)
    return jwt.encode({**claims, "iat": now, "exp": now + lifetime}, secret_key, algorithm=algorithm)


def create_access_token(
    user_id: int, secret_key: str, minutes: int, algorithm: str = "HS256", token_version: int = 0
) -> str:
    """The API's bearer token for the user, valid for `minutes` or until their token version changes."""
    claims = {"sub": str(user_id), "ver": token_version, "purpose": ACCESS}
    return _encode(claims, timedelta(minutes=minutes), secret_key, algorithm)


def create_job_events_ticket(
    user_id: int, token_version: int, job_id: int, secret_key: str, seconds: int, algorithm: str = "HS256"
) -> str:
    """A ticket that opens the event stream of one job, valid for `seconds` (it travels in a URL)."""
    claims = {"sub": str(user_id), "ver": token_version, "purpose": JOB_EVENTS, "job": job_id}
    return _encode(claims, timedelta(seconds=seconds), secret_key, algorithm)


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    token_version: int
    job_id: int | None  # only in job-events tickets


def decode_token(token: str, secret_key: str, algorithm: str, purpose: str) -> TokenClaims | None:
    """The claims of a valid, unexpired token minted for `purpose`, or None for anything else."""
    try:
        payload = jwt.decode(
            token, secret_key, algorithms=[algorithm], options={"require": ["exp", "sub", "ver", "purpose"]}
        )
        if payload["purpose"] != purpose:
            return None
        job = payload.get("job")
        return TokenClaims(int(payload["sub"]), int(payload["ver"]), None if job is None else int(job))
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
