"""Dashboard routes: the summary and the per-annotator and timeline tables (JSON or `?format=csv`).

Who sees what: admins, and members whose role in the project is manager or ML engineer, see the
whole project; every other member (annotators, or a manager who is only an annotator in this
project) gets the same endpoints restricted to their own masks, images and reviews (`scope: "me"`).
The gate and the stage move are `backend.stages.router`'s.
`/dashboard/me` is always the caller's own figures. The timeline comes in pages of buckets (`limit`,
`before`), so that no request grows with the project's age. Non-members get 404 (`ProjectForMember`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from backend.api.deps import CurrentUser, ProjectForMember, SessionDep, project_role
from backend.dashboard import service
from backend.dashboard.schemas import AnnotatorRow, DashboardOut, TimelineRow
from backend.tables import Project, Role, User

router = APIRouter(prefix="/api/projects/{project_id}", tags=["dashboard"])

Format = Annotated[Literal["json", "csv"], Query()]
BUCKET_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:00:00$"  # as TimelineRow.bucket
MAX_TIMELINE_ROWS = 10_000  # one page: more than a year of hours


def scope_for(db: Session, user: User, project: Project) -> service.Scope:
    """The whole project for admins and the project's managers/ML engineers, else the caller's own."""
    if project_role(db, user, project.id) in (Role.admin, Role.manager, Role.ml_engineer):
        return service.Scope(project.id)
    return service.Scope(project.id, author_id=user.id)


def csv_response(rows: Sequence[BaseModel], model: type[BaseModel], filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(model.model_fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.model_dump(mode="json").items()})
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/dashboard")
def get_dashboard(project: ProjectForMember, db: SessionDep, user: CurrentUser) -> DashboardOut:
    return service.dashboard(db, project, scope_for(db, user, project))


@router.get("/dashboard/me")
def get_my_dashboard(project: ProjectForMember, db: SessionDep, user: CurrentUser) -> DashboardOut:
    return service.dashboard(db, project, service.Scope(project.id, author_id=user.id))


@router.get("/dashboard/annotators", response_model=list[AnnotatorRow])
def get_annotators(
    project: ProjectForMember, db: SessionDep, user: CurrentUser, format: Format = "json"
) -> Response | list[AnnotatorRow]:
    rows = service.annotators(db, scope_for(db, user, project))
    if format == "csv":
        return csv_response(rows, AnnotatorRow, f"project-{project.id}-annotators.csv")
    return rows


@router.get("/dashboard/timeline", response_model=list[TimelineRow])
def get_timeline(
    project: ProjectForMember,
    db: SessionDep,
    user: CurrentUser,
    bucket: Annotated[Literal["hour", "day"], Query()] = "hour",
    before: Annotated[str | None, Query(max_length=19, pattern=BUCKET_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TIMELINE_ROWS)] = service.TIMELINE_ROWS,
    format: Format = "json",
) -> Response | list[TimelineRow]:
    """The newest `limit` buckets starting before `before` (the first bucket of the previous page), oldest first."""
    rows = service.timeline(db, scope_for(db, user, project), bucket, before, limit)
    if format == "csv":
        return csv_response(rows, TimelineRow, f"project-{project.id}-timeline-{bucket}.csv")
    return rows
