"""Projects and membership. Visibility: admins see every project, everyone else their memberships."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.models import Image, Project, ProjectMember, Role, User
from backend.projects.schemas import MemberOut, ProjectOut
from backend.projects.settings import ProjectSettings, merge, project_settings, stored_form


class NotFound(LookupError):
    pass


class AlreadyMember(ValueError):
    pass


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


def update_project(
    db: Session, project: Project, *, name: str | None, description: str | None, settings: ProjectSettings | None
) -> Project:
    """Change what is given; the keys set in `settings` are merged into the settings in effect (whose
    invalid stored keys are already dropped, see `backend.projects.settings`).

    The first statement locks the project row (PostgreSQL) or the database (SQLite) and the row is read
    again after it, so two concurrent PATCHes merge one after the other instead of losing one.
    """
    db.execute(update(Project).where(Project.id == project.id).values(name=Project.name)
               .execution_options(synchronize_session=False))
    db.refresh(project)
    if settings is not None:
        project.settings = stored_form(merge(project_settings(project), settings))
    if name is not None:
        project.name = name
    if description is not None:
        project.description = description
    db.commit()
    return project


def visible_projects(db: Session, user: User) -> Sequence[Project]:
    query = select(Project).order_by(Project.id)
    if user.role != Role.admin:
        query = query.join(ProjectMember, ProjectMember.project_id == Project.id).where(ProjectMember.user_id == user.id)
    return db.scalars(query).all()


def image_counts(db: Session, project_ids: Sequence[int]) -> dict[int, int]:
    if not project_ids:
        return {}
    rows = db.execute(
        select(Image.project_id, func.count(Image.id)).where(Image.project_id.in_(project_ids)).group_by(Image.project_id)
    )
    return {pid: n for pid, n in rows}


def project_out(db: Session, project: Project, count: int | None = None) -> ProjectOut:
    if count is None:
        count = image_counts(db, [project.id]).get(project.id, 0)
    fields = {c: getattr(project, c) for c in ProjectOut.model_fields if c not in ("image_count", "settings")}
    return ProjectOut.model_validate({**fields, "settings": project_settings(project), "image_count": count})


def list_project_outs(db: Session, user: User) -> list[ProjectOut]:
    projects = visible_projects(db, user)
    counts = image_counts(db, [p.id for p in projects])
    return [project_out(db, p, counts.get(p.id, 0)) for p in projects]


def list_members(db: Session, project: Project) -> list[MemberOut]:
    rows = db.execute(
        select(ProjectMember, User).join(User, User.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project.id).order_by(User.id)
    )
    return [
        MemberOut(user_id=u.id, username=u.username, role=u.role, role_in_project=m.role_in_project, added_at=m.added_at)
        for m, u in rows
    ]


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
    return MemberOut(user_id=user.id, username=user.username, role=user.role, role_in_project=role_in_project, added_at=member.added_at)


def remove_member(db: Session, project: Project, user_id: int) -> None:
    member = db.get(ProjectMember, (project.id, user_id))
    if member is None:
        raise NotFound(f"user {user_id} is not a member of project {project.id}")
    db.delete(member)
    db.commit()
