"""Account schemas, shared by the API and the CLI so both accept exactly the same names and passwords.

Passwords are bounded by BYTES: bcrypt reads at most 72 bytes of utf-8, and 40 × "é" is 40 characters
but 80 bytes. A password over the limit is a validation error (422, or the CLI's message), never a
silently truncated hash or a 500 from bcrypt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from backend.api.types import RequestModel, lax
from backend.core.security import MAX_PASSWORD_BYTES
from backend.tables import Role


def _fits_bcrypt(value: str) -> str:
    if len(value.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8")
    return value


# A password being checked (login, the current password): anything bcrypt can compare.
Password = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_BYTES), AfterValidator(_fits_bcrypt)]
# A password being set: at least 8 characters as well.
NewPassword = Annotated[str, Field(min_length=8, max_length=MAX_PASSWORD_BYTES), AfterValidator(_fits_bcrypt)]
Username = Annotated[str, Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_.@-]+$")]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: Role
    is_active: bool
    created_at: datetime


class UserCreate(RequestModel):
    username: Username
    password: NewPassword
    role: Role = lax(default=Role.annotator)


class PasswordChange(RequestModel):
    """Changing one's own password needs the current one, so a stolen token cannot take the account over."""

    current_password: Password
    new_password: NewPassword


class PasswordReset(RequestModel):
    """An admin setting another user's password (the user is told it out of band)."""

    new_password: NewPassword


class UserUpdate(RequestModel):
    """What an admin changes on an account; a field left out stays as it is."""

    is_active: bool | None = None
