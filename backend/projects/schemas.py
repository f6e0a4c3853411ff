from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.api.types import DbId, RequestModel, lax
from backend.projects.settings import ProjectSettings
from backend.tables import Role, Stage


class ProjectCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    settings: ProjectSettings = Field(default_factory=ProjectSettings)


class ProjectUpdate(RequestModel):
    """A partial update: absent fields stay as they are. In `settings` too: the keys it sets replace
    the stored ones (objects merge key by key, e.g. one gate threshold), the rest stay."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    settings: ProjectSettings | None = None
    archived: bool | None = Field(
        default=None,
        description="archive (true) or restore (false) the project: an "
        "archived one is read-only for annotation and hidden "
        "from the project list unless asked for",
    )


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    stage: Stage
    settings: ProjectSettings  # in effect: what was set, defaults for the rest
    active_model_version_id: int | None
    created_by: int | None
    created_at: datetime
    image_count: int
    archived: bool


def _project_role(role: Role | None) -> Role | None:
    if role == Role.admin:
        raise ValueError("admin is a global role, not a role in a project")
    return role


class MemberAdd(RequestModel):
    user_id: DbId
    role_in_project: Role | None = lax(
        default=None,
        description="the member's rights in this project (default: their global role); admins are admins everywhere",
    )

    _not_admin = field_validator("role_in_project")(_project_role)


class MemberUpdate(RequestModel):
    role_in_project: Role = lax(description="the member's rights in this project")

    _not_admin = field_validator("role_in_project")(_project_role)


class MemberOut(BaseModel):
    user_id: int
    username: str
    role: Role
    role_in_project: Role | None
    added_at: datetime
