"""POST /api/auth/token: OAuth2 password form -> bearer token, with failed logins rate limited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from pydantic import BaseModel, Field

from backend.api.deps import SessionDep, SettingsDep
from backend.api.types import FormModel
from backend.auth import service
from backend.auth.ratelimit import LoginLimiterDep, client_address
from backend.users.schemas import Password

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class LoginForm(FormModel):
    """The OAuth2 password form (other OAuth2 fields such as `grant_type` are ignored).

    The password is bounded like every other password (1..72 bytes of UTF-8), so an over-long one is
    a 422 and never reaches bcrypt; the username like the column that stores it."""

    username: str = Field(min_length=1, max_length=150)
    password: Password


@router.post("/token")
def login(
    form: Annotated[LoginForm, Form()],
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    limiter: LoginLimiterDep,
) -> Token:
    address = client_address(request)
    limiter.check(form.username, address)
    user = service.authenticate(db, settings, form.username, form.password)
    if user is None:
        limiter.failed(form.username, address)
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Token(access_token=service.issue_token(user, settings))
