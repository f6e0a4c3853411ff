"""GET /api/users/me, GET /api/users (admin, manager: to pick members), POST /api/users (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from backend.api.deps import CurrentUser, SessionDep, SettingsDep, require_role
from backend.models import Role, User
from backend.users import service
from backend.users.schemas import UserCreate, UserOut

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("/me")
def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.get("")
def list_users(db: SessionDep, _: Annotated[User, Depends(require_role(Role.manager))]) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in service.list_users(db)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, db: SessionDep, settings: SettingsDep, _: Annotated[User, Depends(require_role(Role.admin))]
) -> UserOut:
    try:
        user = service.create_user(db, body.username, body.password, body.role, settings.bcrypt_rounds)
    except service.UsernameTaken as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return UserOut.model_validate(user)
