"""projects and project_members: who may see which images."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.tables.base import Base, str_enum, utcnow
from backend.tables.enums import Role, Stage


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    stage: Mapped[Stage] = mapped_column(str_enum(Stage, "project_stage"), default=Stage.assisted_manual)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Circular with model_versions.project_id, hence use_alter (added after both tables exist).
    active_model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL", use_alter=True)
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set when a manager archives the project: hidden from the project list, no claims or mask saves.
    archived_at: Mapped[datetime | None]


class ProjectMember(Base):
    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    # Optional narrower role inside this project (e.g. a manager who only annotates here).
    role_in_project: Mapped[Role | None] = mapped_column(str_enum(Role, "member_role"))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
