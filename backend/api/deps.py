"""FastAPI dependencies as `Annotated` aliases, so a route's signature says what it needs.

- `SettingsDep`, `SessionDep`, `StorageDep`: the app's settings, a DB session per request, the storage.
- `CurrentUser`: the active user of the bearer token (401 otherwise).
- `require_role(Role.manager, ...)`: the current user if their global role is listed; admins always pass (403 otherwise).
- `ProjectForMember` / `ImageForMember`: the project/image of the path parameter `project_id`/`image_id`
  if the current user may see it (admin, or a member of the project). Anyone else gets the same 404 as
  for an unknown id, so nobody learns which ids exist in other projects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.auth.service import user_from_token
from backend.core.config import Settings
from backend.core.security import ACCESS
from backend.models import Image, Project, ProjectMember, Role, User
from backend.storage import LocalStorage

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; rolled back if the route raised, always closed."""
    with request.app.state.session_factory() as session:
        yield session


def get_storage(request: Request) -> LocalStorage:
    return request.app.state.storage


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[LocalStorage, Depends(get_storage)]


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


def require_role(*roles: Role) -> Callable[[User], User]:
    """A dependency admitting users whose global role is in `roles` (admins always)."""
    allowed = set(roles) | {Role.admin}

    def check(user: CurrentUser) -> User:
        if user.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=f"requires role: {names}")
        return user

    return check


def is_member(db: Session, project_id: int, user_id: int) -> bool:
    return db.scalar(
        select(ProjectMember.user_id).where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)
    ) is not None


def can_see_project(db: Session, user: User, project_id: int) -> bool:
    """Admins see every project; everyone else only the projects they are members of."""
    return user.role == Role.admin or is_member(db, project_id, user.id)


def get_project_for_member(project_id: int, db: SessionDep, user: CurrentUser) -> Project:
    project = db.get(Project, project_id)
    if project is None or not can_see_project(db, user, project.id):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"project {project_id} not found")
    return project


def get_image_for_member(image_id: int, db: SessionDep, user: CurrentUser) -> Image:
    image = db.get(Image, image_id)
    if image is None or not can_see_project(db, user, image.project_id):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"image {image_id} not found")
    return image


ProjectForMember = Annotated[Project, Depends(get_project_for_member)]
ImageForMember = Annotated[Image, Depends(get_image_for_member)]
