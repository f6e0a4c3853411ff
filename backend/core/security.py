"""Password hashing (bcrypt) and bearer tokens (JWT, HS256 by default)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bcrypt
import jwt

# bcrypt only looks at the first 72 bytes; longer passwords are refused rather than silently truncated.
MAX_PASSWORD_BYTES = 72


def hash_password(password: str, rounds: int = 12) -> str:
    """bcrypt hash of `password` (utf-8), as an ASCII string for the `users.password_hash` column."""
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


def create_access_token(user_id: int, secret_key: str, minutes: int, algorithm: str = "HS256") -> str:
    """A signed token whose subject is the user id, valid for `minutes`."""
    now = datetime.now(UTC)
    payload = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=minutes)}
    return jwt.encode(payload, secret_key, algorithm=algorithm)


def decode_access_token(token: str, secret_key: str, algorithm: str = "HS256") -> int | None:
    """The user id in a valid, unexpired token, or None for anything else."""
    try:
        payload = jwt.decode(token, secret_key, algorithms=[algorithm], options={"require": ["exp", "sub"]})
        return int(payload["sub"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
