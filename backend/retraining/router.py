"""``POST /api/projects/{id}/retrain``: start a retraining round (a `train` job).

Body: `RetrainParams` (every field optional; bad values are a 422 and no job is made). ML engineers
(and admins) who are members may start one. 409 if a round of the project is already queued or
running; 422 if the project has fewer accepted masks than ``min_masks``, if ``batch_size`` does not
split into ``accumulation_steps`` micro-batches, or if ``from_model_version_id`` is not a ready version of
the project or a global one. 202 with the `JobOut`;
follow it with ``GET /api/jobs/{id}`` or its SSE events (``result`` carries step, loss, ETA and the
loss curve), stop it with ``POST /api/jobs/{id}/cancel``.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend.api.deps import CurrentUser, ProjectForMlEngineer, SessionDep, SettingsDep, StorageDep
from backend.jobs.schemas import JobOut
from backend.retraining import service
from backend.retraining.schemas import RetrainParams

router = APIRouter(tags=["retraining"])


@router.post("/api/projects/{project_id}/retrain", status_code=status.HTTP_202_ACCEPTED)
def start_retrain(
    project: ProjectForMlEngineer,
    db: SessionDep,
    user: CurrentUser,
    storage: StorageDep,
    settings: SettingsDep,
    params: RetrainParams | None = None,
) -> JobOut:
    try:
        job = service.start_round(db, project, user.id, params or RetrainParams(), settings, storage)
    except service.RoundConflict as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    except (service.NotEnoughMasks, service.BadStartingVersion) as error:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(error)) from None
    db.refresh(job)
    return JobOut.model_validate(job)
