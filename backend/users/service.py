"""Creating, listing and managing users: passwords, activation, token revocation.

Every change that should end the user's sessions (a new password, deactivation, "log out
everywhere") bumps `token_version`, which every token carries, so the tokens minted before get 401.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core.security import hash_password
from backend.tables import Role, User


class UsernameTaken(ValueError):
    pass


def create_user(db: Session, username: str, password: str, role: Role, bcrypt_rounds: int = 12) -> User:
    """Create and commit a user; `UsernameTaken` if the name exists. Callers validate the name and the
    password with `backend.users.schemas.UserCreate` first (the API through FastAPI, the CLI by hand)."""
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


def get_by_username(db: Session, username: str) -> User:
    """The user with this name; `LookupError` if there is none."""
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        raise LookupError(f"user {username!r} not found")
    return user


def _revoke(user: User) -> None:
    # An SQL increment, so two concurrent revocations both count.
    user.token_version = User.token_version + 1


def _save(db: Session, user: User) -> User:
    db.commit()
    db.refresh(user)  # read back the incremented version (sessions do not expire on commit)
    return user


def set_password(db: Session, user: User, password: str, bcrypt_rounds: int = 12) -> User:
    """Store a new password (validated by `NewPassword`) and revoke every token of the user."""
    user.password_hash = hash_password(password, bcrypt_rounds)
    _revoke(user)
    return _save(db, user)


def set_active(db: Session, user: User, active: bool) -> User:
    """Activate or deactivate; deactivating also revokes every token, so a reactivation does not
    bring old sessions back."""
    user.is_active = active
    if not active:
        _revoke(user)
    return _save(db, user)


def revoke_tokens(db: Session, user: User) -> User:
    """Log the user out everywhere: every token minted so far gets 401."""
    _revoke(user)
    return _save(db, user)
