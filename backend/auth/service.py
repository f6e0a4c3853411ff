"""Checking credentials and issuing tokens."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.security import create_access_token, verify_password
from backend.models import User


def authenticate(db: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None (unknown user, wrong password, disabled)."""
    user = db.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active or not verify_password(password, user.password_hash):
        return None
    return user


def issue_token(user: User, settings: Settings) -> str:
    return create_access_token(
        user.id, settings.ensure_secret_key(), settings.access_token_minutes, settings.jwt_algorithm
    )
