"""FastAPI dependencies as `Annotated` aliases, so a route's signature says what it needs.

- `SettingsDep`, `SessionDep`, `StorageDep`: the app's settings, a DB session per request, the storage
  (`backend.storage.storage_for`, one per process).
- `CurrentUser`: the active user of the bearer token (401 otherwise).
- Authorization, one dependency per route, decided by the caller's **role in the project** the
  route is about (`project_role`: admins are admins everywhere; a member has their `role_in_project`,
  or their global role where none was given). `project_for(*roles)`, `image_for`, `mask_for`,
  `job_for`, `model_version_for` load the object of the path's id and admit the listed roles: a
  non-member gets the same 404 as for an unknown id (nobody learns which ids exist in other
  projects), a member without the role 403. `require_role(*roles)` checks the global role, only for
  what belongs to no project. Each such dependency carries an `authorization` mark, and
  tests/backend/test_authorization.py fails for a route without one and checks every route against
  its (role in project × endpoint → allowed) table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.api.types import PathId
from backend.auth.service import user_from_token
from backend.core.config import Settings
from backend.core.security import ACCESS
from backend.tables import Image, Job, Mask, ModelVersion, Project, ProjectMember, Role, User
from model_server.api import Storage

T = TypeVar("T")

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; rolled back if the route raised, always closed."""
    with request.app.state.session_factory() as session:
        yield session


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[Storage, Depends(get_storage)]


def get_current_user(token: Annotated[str, Depends(oauth2_scheme)], db: SessionDep, settings: SettingsDep) -> User:
    unauthorized = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="invalid or expired token",
        headers={"WWW-Authenticate": "Bearer"},
    )
    # A revoked token (its version is not the user's current one) is refused like an expired one.
    user = user_from_token(db, settings, token, ACCESS)
    if user is None:
        raise unauthorized
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


# Every role a member can have in a project; admins pass every check.
MEMBER_ROLES = (Role.annotator, Role.manager, Role.ml_engineer)
# Who may start the project's long jobs (embedding, automatic masks, detector, exports).
JOB_STARTERS = (Role.manager, Role.ml_engineer)


def _authorization(roles: tuple[Role, ...], dependency: Callable) -> Callable:
    """Mark `dependency` as the route's authorization (the route-coverage test looks for the mark)."""
    dependency.authorization = frozenset(roles) | {Role.admin}  # type: ignore[attr-defined]
    return dependency


def require_role(*roles: Role) -> Callable[[User], User]:
    """A dependency admitting users whose GLOBAL role is in `roles` (admins always; 403 otherwise).

    Only for what belongs to no project (creating a project, the user list); everything of a project
    is decided by the role in that project (`project_for`, `image_for`, ...)."""
    allowed = set(roles) | {Role.admin}

    def check(user: CurrentUser) -> User:
        if user.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=f"requires role: {names}")
        return user

    return _authorization(roles, check)


def is_member(db: Session, project_id: int, user_id: int) -> bool:
    return (
        db.scalar(
            select(ProjectMember.user_id).where(
                ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
            )
        )
        is not None
    )


def project_role(db: Session, user: User, project_id: int) -> Role | None:
    """The user's rights in one project: `admin` for global admins; for a member, their
    `role_in_project` (or their global role where none was given); None for a non-member.

    A global manager added to a project as `annotator` is an annotator there."""
    if user.role == Role.admin:
        return Role.admin
    member = db.get(ProjectMember, (project_id, user.id))
    if member is None:
        return None
    return member.role_in_project or user.role


def can_see_project(db: Session, user: User, project_id: int) -> bool:
    """Admins see every project; everyone else only the projects they are members of."""
    return project_role(db, user, project_id) is not None


def authorize(db: Session, user: User, project_id: int, roles: tuple[Role, ...], not_found: str) -> Role:
    """The caller's role in the project if it is one of `roles` (or admin).

    A non-member gets 404 with `not_found` (the same answer as for an unknown id, so nobody learns
    which ids exist in other projects); a member whose role in the project is not enough gets 403."""
    role = project_role(db, user, project_id)
    if role is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=not_found)
    if role != Role.admin and role not in roles:
        names = ", ".join(r.value for r in roles)
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"requires role in this project: {names} (yours: {role.value})",
        )
    return role


def _get(db: Session, model: type[T], object_id: int, noun: str) -> T:
    """The row `object_id` of `model`, or the 404 that names it."""
    row = db.get(model, object_id)
    if row is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"{noun} {object_id} not found")
    return row


def project_for(*roles: Role) -> Callable[..., Project]:
    """The project of the path's `project_id` if the caller's role in it is one of `roles`."""

    def dependency(project_id: PathId, db: SessionDep, user: CurrentUser) -> Project:
        project = _get(db, Project, project_id, "project")
        authorize(db, user, project.id, roles, f"project {project_id} not found")
        return project

    return _authorization(roles, dependency)


def image_for(*roles: Role) -> Callable[..., Image]:
    """The image of the path's `image_id` if the caller's role in its project is one of `roles`."""

    def dependency(image_id: PathId, db: SessionDep, user: CurrentUser) -> Image:
        image = _get(db, Image, image_id, "image")
        authorize(db, user, image.project_id, roles, f"image {image_id} not found")
        return image

    return _authorization(roles, dependency)


def mask_for(*roles: Role) -> Callable[..., Mask]:
    """The mask of the path's `mask_id` if the caller's role in its project is one of `roles`."""

    def dependency(mask_id: PathId, db: SessionDep, user: CurrentUser) -> Mask:
        mask = _get(db, Mask, mask_id, "mask")
        authorize(db, user, mask.project_id, roles, f"mask {mask_id} not found")
        return mask

    return _authorization(roles, dependency)


def job_for(*roles: Role, creator_too: bool = False) -> Callable[..., Job]:
    """The job of the path's `job_id` if the caller's role in its project is one of `roles` (or, with
    `creator_too`, the caller created it). A job of no project is its creator's and the admins'."""

    def dependency(job_id: PathId, db: SessionDep, user: CurrentUser) -> Job:
        missing = f"job {job_id} not found"
        job = _get(db, Job, job_id, "job")
        own = job.created_by == user.id
        if job.project_id is None:
            if not (own or user.role == Role.admin):
                raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=missing)
        elif not (creator_too and own and is_member(db, job.project_id, user.id)):
            authorize(db, user, job.project_id, roles, missing)
        return job

    return _authorization(roles, dependency)


def model_version_for(*roles: Role) -> Callable[..., ModelVersion]:
    """The model version of the path's `version_id`: a global version (no project) for any user, a
    project's version if the caller's role in that project is one of `roles`."""

    def dependency(version_id: PathId, db: SessionDep, user: CurrentUser) -> ModelVersion:
        version = _get(db, ModelVersion, version_id, "model version")
        if version.project_id is not None:
            authorize(db, user, version.project_id, roles, f"model version {version_id} not found")
        return version

    return _authorization(roles, dependency)


# What each route needs, by name. Any member: reading, annotating, reviewing. Managers: the project's
# images, members, settings and stages. Managers and ML engineers: the long jobs. ML engineers: models.
AnyUser = Annotated[User, Depends(require_role(*MEMBER_ROLES))]
ProjectForMember = Annotated[Project, Depends(project_for(*MEMBER_ROLES))]
ProjectForManager = Annotated[Project, Depends(project_for(Role.manager))]
ProjectForJobStarter = Annotated[Project, Depends(project_for(*JOB_STARTERS))]
ProjectForMlEngineer = Annotated[Project, Depends(project_for(Role.ml_engineer))]
ImageForMember = Annotated[Image, Depends(image_for(*MEMBER_ROLES))]
ImageForManager = Annotated[Image, Depends(image_for(Role.manager))]
MaskForMember = Annotated[Mask, Depends(mask_for(*MEMBER_ROLES))]
JobForMember = Annotated[Job, Depends(job_for(*MEMBER_ROLES))]
JobForCanceller = Annotated[Job, Depends(job_for(*JOB_STARTERS, creator_too=True))]
ModelVersionForMember = Annotated[ModelVersion, Depends(model_version_for(*MEMBER_ROLES))]
