"""Creating and listing users."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core.security import hash_password
from backend.models import Role, User


class UsernameTaken(ValueError):
    pass


def create_user(db: Session, username: str, password: str, role: Role, bcrypt_rounds: int = 12) -> User:
    """Create and commit a user; `UsernameTaken` if the name exists, `ValueError` for a bad password."""
    if db.scalar(select(User.id).where(User.username == username)) is not None:
        raise UsernameTaken(f"username {username!r} is taken")
    user = User(username=username, password_hash=hash_password(password, bcrypt_rounds), role=role)
    db.add(user)
    try:
        db.commit()
    except IntegrityError as exc:  # a concurrent create with the same name
        db.rollback()
        raise UsernameTaken(f"username {username!r} is taken") from exc
    return user


def list_users(db: Session) -> Sequence[User]:
    return db.scalars(select(User).order_by(User.id)).all()
