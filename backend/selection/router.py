"""Selection routes: what the dashboard shows of it (any member) and re-scoring (job starters).

The strategy itself is a project setting (``selection.strategy``, `PATCH /api/projects/{id}`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import func, select

from backend.api.deps import CurrentUser, ProjectForJobStarter, ProjectForMember, SessionDep, SettingsDep, StorageDep
from backend.clients.model_server import model_service
from backend.jobs.schemas import JobOut
from backend.model_versions.service import active_version
from backend.projects.settings import project_settings
from backend.selection import service
from backend.selection.schemas import SelectionOut, UpcomingImage
from backend.selection.tasks import start_scoring
from backend.tables.selection import ImageScore

router = APIRouter(prefix="/api/projects/{project_id}/selection", tags=["selection"])


@router.get("")
def get_selection(
    project: ProjectForMember,
    db: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100, description="how many of the next images to list")] = 10,
) -> SelectionOut:
    histogram, unscored = service.uncertainty_histogram(db, project)
    flagged = db.scalar(
        select(func.count())
        .select_from(ImageScore)
        .where(ImageScore.project_id == project.id, ImageScore.near_duplicate_of.is_not(None))
    )
    return SelectionOut(
        strategy=project_settings(project).selection.strategy,
        uncertainty_histogram=histogram,
        unscored=unscored,
        near_duplicates=flagged or 0,
        upcoming=[
            UpcomingImage(
                image_id=image.id,
                file_name=image.file_name,
                uncertainty=None if score is None else score.uncertainty,
                near_duplicate_of=None if score is None else score.near_duplicate_of,
            )
            for image, score in service.upcoming(db, project, limit)
        ],
    )


@router.post("/score", status_code=status.HTTP_202_ACCEPTED)
def score_project(
    project: ProjectForJobStarter, db: SessionDep, user: CurrentUser, storage: StorageDep, settings: SettingsDep
) -> JobOut:
    """Start (or return the pending) job scoring the project's embedded images with its serving model
    version and ranking them again (also after a change of `selection.seed`)."""
    version = active_version(db, project, storage, model_service(settings, storage), settings)
    return JobOut.model_validate(start_scoring(db, settings, project.id, version.id, user.id))
