"""Projects (list/create/get/update/archive) and their members (list/add/change role/remove).

Creating a project needs the global role manager (or admin); changing one (PATCH) needs the role
manager in that project (or admin). Managing members needs manager/admin and,
for a manager, membership of the project (non-members get 404 like for everything of a project).
A project keeps at least one manager among its members (409 for a change that would leave none).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from backend.api.deps import AnyUser, ProjectForManager, ProjectForMember, SessionDep, require_role
from backend.api.types import PathId
from backend.projects import service
from backend.projects.schemas import MemberAdd, MemberOut, MemberUpdate, ProjectCreate, ProjectOut, ProjectUpdate
from backend.tables import Role, User

router = APIRouter(prefix="/api/projects", tags=["projects"])

ManagerUser = Annotated[User, Depends(require_role(Role.manager))]


@router.get("")
def list_projects(
    db: SessionDep,
    user: AnyUser,
    include_archived: Annotated[bool, Query(description="also the archived projects")] = False,
) -> list[ProjectOut]:
    return service.list_project_outs(db, user, include_archived)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_project(body: ProjectCreate, db: SessionDep, user: ManagerUser) -> ProjectOut:
    project = service.create_project(db, user, body.name, body.description, body.settings)
    return service.project_out(db, project, 0)


@router.get("/{project_id}")
def get_project(project: ProjectForMember, db: SessionDep) -> ProjectOut:
    return service.project_out(db, project)


@router.patch("/{project_id}")
def update_project(body: ProjectUpdate, project: ProjectForManager, db: SessionDep) -> ProjectOut:
    """Change name, description, settings or archived (only the keys given; see `ProjectUpdate`)."""
    service.update_project(
        db, project, name=body.name, description=body.description, settings=body.settings, archived=body.archived
    )
    return service.project_out(db, project)


@router.get("/{project_id}/members")
def list_members(project: ProjectForMember, db: SessionDep) -> list[MemberOut]:
    return service.list_members(db, project)


@router.post("/{project_id}/members", status_code=status.HTTP_201_CREATED)
def add_member(body: MemberAdd, project: ProjectForManager, db: SessionDep) -> MemberOut:
    try:
        return service.add_member(db, project, body.user_id, body.role_in_project)
    except service.NotFound as exc:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except service.AlreadyMember as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc


@router.patch("/{project_id}/members/{user_id}")
def update_member(user_id: PathId, body: MemberUpdate, project: ProjectForManager, db: SessionDep) -> MemberOut:
    try:
        return service.update_member_role(db, project, user_id, body.role_in_project)
    except service.NotFound as exc:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except service.LastManager as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc


@router.delete("/{project_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(user_id: PathId, project: ProjectForManager, db: SessionDep) -> Response:
    try:
        service.remove_member(db, project, user_id)
    except service.NotFound as exc:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except service.LastManager as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)
