"""Accounts over HTTP.

- `GET /api/users/me`; `GET /api/users` (admin, manager: to pick members); `POST /api/users` (admin).
- Own account: `POST /api/users/me/password` (needs the current password; answers a fresh token, since
  the change revokes every earlier one), `POST /api/users/me/revoke-tokens` (log out everywhere).
- Admin, on another account: `POST /api/users/{id}/password` (reset), `PATCH /api/users/{id}`
  (`{"is_active": false}` deactivates, `true` reactivates), `POST /api/users/{id}/revoke-tokens`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status

from backend.api.deps import AnyUser, SessionDep, SettingsDep, require_role
from backend.api.types import PathId
from backend.auth import service as auth_service
from backend.auth.ratelimit import LoginLimiterDep, client_address
from backend.auth.router import Token
from backend.core.security import verify_password
from backend.tables import Role, User
from backend.users import service
from backend.users.schemas import PasswordChange, PasswordReset, UserCreate, UserOut, UserUpdate

router = APIRouter(prefix="/api/users", tags=["users"])

Admin = Annotated[User, Depends(require_role(Role.admin))]


@router.get("/me")
def me(user: AnyUser) -> UserOut:
    return UserOut.model_validate(user)


@router.get("")
def list_users(db: SessionDep, _: Annotated[User, Depends(require_role(Role.manager))]) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in service.list_users(db)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, db: SessionDep, settings: SettingsDep, _: Admin) -> UserOut:
    try:
        user = service.create_user(db, body.username, body.password, body.role, settings.bcrypt_rounds)
    except service.UsernameTaken as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return UserOut.model_validate(user)


@router.post("/me/password")
def change_own_password(
    body: PasswordChange,
    request: Request,
    user: AnyUser,
    db: SessionDep,
    settings: SettingsDep,
    limiter: LoginLimiterDep,
) -> Token:
    """A wrong current password counts as a failed login, so a stolen token cannot guess it freely."""
    address = client_address(request)
    limiter.check(user.username, address)
    if not verify_password(body.current_password, user.password_hash):
        limiter.failed(user.username, address)
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="the current password is incorrect")
    user = service.set_password(db, user, body.new_password, settings.bcrypt_rounds)
    return Token(access_token=auth_service.issue_token(user, settings))


@router.post("/me/revoke-tokens", status_code=status.HTTP_204_NO_CONTENT)
def revoke_own_tokens(user: AnyUser, db: SessionDep) -> None:
    """Log out everywhere, this token included."""
    service.revoke_tokens(db, user)


def _other_user(db: SessionDep, user_id: PathId) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"user {user_id} not found")
    return user


# Routes list `Admin` before `Target`, so a non-admin gets 403 before learning whether the id exists.
Target = Annotated[User, Depends(_other_user)]


@router.post("/{user_id}/password", status_code=status.HTTP_204_NO_CONTENT)
def reset_password(_: Admin, target: Target, body: PasswordReset, db: SessionDep, settings: SettingsDep) -> None:
    """Set another user's password (e.g. they forgot it); their tokens are revoked."""
    service.set_password(db, target, body.new_password, settings.bcrypt_rounds)


@router.patch("/{user_id}")
def update_user(admin: Admin, target: Target, body: UserUpdate, db: SessionDep) -> UserOut:
    """Deactivate (`{"is_active": false}`: no more logins, every token revoked, nothing deleted) or
    reactivate a user. Admins cannot deactivate themselves, so the last admin cannot lock everyone out."""
    if body.is_active is not None:
        if not body.is_active and target.id == admin.id:
            raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail="you cannot deactivate your own account")
        service.set_active(db, target, body.is_active)
    return UserOut.model_validate(target)


@router.post("/{user_id}/revoke-tokens", status_code=status.HTTP_204_NO_CONTENT)
def revoke_tokens(_: Admin, target: Target, db: SessionDep) -> None:
    """Log another user out everywhere (e.g. a token may have leaked), keeping their password."""
    service.revoke_tokens(db, target)
