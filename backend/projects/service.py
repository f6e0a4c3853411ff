"""Projects and membership. Visibility: admins see every project, everyone else their memberships.

A project always keeps a manager: removing or demoting the last member whose role in the project is
manager is refused (`LastManager`). Only members count: a global admin who is no member (or a member
without a role of their own, whose global role is admin) can fix the project but is not its manager.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.projects.schemas import MemberOut, ProjectOut
from backend.projects.settings import ProjectSettings, merge, project_settings, stored_form
from backend.tables import Image, Project, ProjectMember, Role, User


class NotFound(LookupError):
    pass


class AlreadyMember(ValueError):
    pass


class LastManager(ValueError):
    """The change would leave the project without a manager."""


def create_project(
    db: Session, creator: User, name: str, description: str = "", settings: ProjectSettings | None = None
) -> Project:
    """Create a project with its creator as first member (role_in_project = manager)."""
    stored = stored_form(settings) if settings is not None else {}
    project = Project(name=name, description=description, settings=stored, created_by=creator.id)
    db.add(project)
    db.flush()
    db.add(ProjectMember(project_id=project.id, user_id=creator.id, role_in_project=Role.manager))
    db.commit()
    return project


def _lock(db: Session, project: Project) -> None:
    """Lock the project row (PostgreSQL) or the database (SQLite) until the commit and read the row
    again, so concurrent changes of one project (settings, members) run one after the other."""
    db.execute(
        update(Project)
        .where(Project.id == project.id)
        .values(name=Project.name)
        .execution_options(synchronize_session=False)
    )
    db.refresh(project)


def update_project(
    db: Session,
    project: Project,
    *,
    name: str | None,
    description: str | None,
    settings: ProjectSettings | None,
    archived: bool | None = None,
) -> Project:
    """Change what is given; the keys set in `settings` are merged into the settings in effect (whose
    invalid stored keys are already dropped, see `backend.projects.settings`). Under `_lock`, so two
    concurrent PATCHes merge one after the other instead of losing one. Archiving again keeps the
    first time."""
    _lock(db, project)
    if archived is not None and archived != (project.archived_at is not None):
        project.archived_at = datetime.now(UTC) if archived else None
    if settings is not None:
        project.settings = stored_form(merge(project_settings(project), settings))
    if name is not None:
        project.name = name
    if description is not None:
        project.description = description
    db.commit()
    return project


def visible_projects(db: Session, user: User, include_archived: bool = False) -> Sequence[Project]:
    query = select(Project).order_by(Project.id)
    if not include_archived:
        query = query.where(Project.archived_at.is_(None))
    if user.role != Role.admin:
        query = query.join(ProjectMember, ProjectMember.project_id == Project.id).where(
            ProjectMember.user_id == user.id
        )
    return db.scalars(query).all()


def image_counts(db: Session, project_ids: Sequence[int]) -> dict[int, int]:
    if not project_ids:
        return {}
    rows = db.execute(
        select(Image.project_id, func.count(Image.id))
        .where(Image.project_id.in_(project_ids))
        .group_by(Image.project_id)
    )
    return {pid: n for pid, n in rows}


def project_out(db: Session, project: Project, count: int | None = None) -> ProjectOut:
    if count is None:
        count = image_counts(db, [project.id]).get(project.id, 0)
    computed = {
        "settings": project_settings(project),
        "image_count": count,
        "archived": project.archived_at is not None,
    }
    fields = {c: getattr(project, c) for c in ProjectOut.model_fields if c not in computed}
    return ProjectOut.model_validate({**fields, **computed})


def list_project_outs(db: Session, user: User, include_archived: bool = False) -> list[ProjectOut]:
    projects = visible_projects(db, user, include_archived)
    counts = image_counts(db, [p.id for p in projects])
    return [project_out(db, p, counts.get(p.id, 0)) for p in projects]


def _member_out(member: ProjectMember, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        username=user.username,
        role=user.role,
        role_in_project=member.role_in_project,
        added_at=member.added_at,
    )


def list_members(db: Session, project: Project) -> list[MemberOut]:
    rows = db.execute(
        select(ProjectMember, User)
        .join(User, User.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project.id)
        .order_by(User.id)
    )
    return [_member_out(m, u) for m, u in rows]


def add_member(db: Session, project: Project, user_id: int, role_in_project: Role | None = None) -> MemberOut:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    if db.get(ProjectMember, (project.id, user_id)) is not None:
        raise AlreadyMember(f"user {user_id} is already a member of project {project.id}")
    member = ProjectMember(project_id=project.id, user_id=user_id, role_in_project=role_in_project)
    db.add(member)
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise AlreadyMember(f"user {user_id} is already a member of project {project.id}") from exc
    return _member_out(member, user)


def _locked_member(db: Session, project: Project, user_id: int) -> tuple[ProjectMember, User]:
    """The member row and its user, under the project's lock (so two managers removing each other at
    the same time cannot both pass the last-manager check); `NotFound` for a non-member."""
    _lock(db, project)
    row = db.execute(
        select(ProjectMember, User)
        .join(User, User.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project.id, ProjectMember.user_id == user_id)
    ).first()
    if row is None:
        db.rollback()
        raise NotFound(f"user {user_id} is not a member of project {project.id}")
    return row[0], row[1]


def _refuse_last_manager(db: Session, project: Project, member: ProjectMember, user: User, action: str) -> None:
    """Raise `LastManager` if `member` is a manager of the project and no other member is."""
    if (member.role_in_project or user.role) != Role.manager:
        return
    managers = db.scalar(
        select(func.count())
        .select_from(ProjectMember)
        .join(User, User.id == ProjectMember.user_id)
        .where(
            ProjectMember.project_id == project.id,
            func.coalesce(ProjectMember.role_in_project, User.role) == Role.manager,
        )
    )
    if (managers or 0) <= 1:
        db.rollback()
        raise LastManager(
            f"{action} would leave project {project.id} without a manager: make another member its manager first"
        )


def update_member_role(db: Session, project: Project, user_id: int, role_in_project: Role) -> MemberOut:
    member, user = _locked_member(db, project, user_id)
    if role_in_project != Role.manager:
        _refuse_last_manager(db, project, member, user, f"making {user.username} {role_in_project.value}")
    member.role_in_project = role_in_project
    db.commit()
    return _member_out(member, user)


def remove_member(db: Session, project: Project, user_id: int) -> None:
    """Remove the member; the project's images assigned to them are free for anyone again."""
    member, user = _locked_member(db, project, user_id)
    _refuse_last_manager(db, project, member, user, f"removing {user.username}")
    db.execute(
        update(Image)
        .where(Image.project_id == project.id, Image.assigned_to == user_id)
        .values(assigned_to=None)
        .execution_options(synchronize_session=False)
    )
    db.delete(member)
    db.commit()
