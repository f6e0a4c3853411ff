from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backend.models import Role, Stage


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    settings: dict[str, Any] = Field(default_factory=dict)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    stage: Stage
    settings: dict[str, Any]
    active_model_version_id: int | None
    created_by: int | None
    created_at: datetime
    image_count: int


class MemberAdd(BaseModel):
    user_id: int
    role_in_project: Role | None = None


class MemberOut(BaseModel):
    user_id: int
    username: str
    role: Role
    role_in_project: Role | None
    added_at: datetime
