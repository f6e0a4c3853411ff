"""Checking credentials, issuing tokens, and finding the user a token belongs to."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.security import (
    create_access_token,
    decode_token,
    hash_password,
    verify_password,
)
from backend.tables import User


@lru_cache
def _dummy_hash(rounds: int) -> str:
    return hash_password("not anyone's password", rounds)


def authenticate(db: Session, settings: Settings, username: str, password: str) -> User | None:
    """The active user with these credentials, or None (unknown user, wrong password, disabled).

    bcrypt runs in every case (against a dummy hash for an unknown name), so the answer takes as long
    for a name that exists as for one that does not, and timing does not tell which usernames exist."""
    user = db.scalar(select(User).where(User.username == username))
    matches = verify_password(password, user.password_hash if user else _dummy_hash(settings.bcrypt_rounds))
    if user is None or not matches or not user.is_active:
        return None
    return user


def issue_token(user: User, settings: Settings) -> str:
    return create_access_token(
        user.id,
        settings.ensure_secret_key(),
        settings.access_token_minutes,
        settings.jwt_algorithm,
        user.token_version,
    )


def user_from_token(
    db: Session, settings: Settings, token: str, purpose: str, job_id: int | None = None
) -> User | None:
    """The active user of a valid token minted for `purpose` (and, for a job-events ticket, for the job
    `job_id`); None if the token is invalid, expired, for another purpose or job, or revoked (its
    version is not the user's current one)."""
    claims = decode_token(token, settings.ensure_secret_key(), settings.jwt_algorithm, purpose)
    if claims is None or claims.job_id != job_id:
        return None
    user = db.get(User, claims.user_id)
    if user is None or not user.is_active or user.token_version != claims.token_version:
        return None
    return user
