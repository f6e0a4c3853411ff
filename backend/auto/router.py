"""`POST /api/projects/{id}/auto-annotate`: start the fully automatic stage on a project (a job).

Body: `AutoParams` (every field optional; absurd values are a 422 and no job is made). Managers and
ML engineers (and admins) who are members may start it. If an auto job of the project is already
queued or running, that job is returned instead of a second one. 202 with the `JobOut`; follow it
with ``GET /api/jobs/{id}`` or its SSE events.

It neither requires nor changes the project's stage (a manager may try it earlier); the masks are
stored with stage ``fully_automatic``, an image's progress in that stage is
``images.stage_done["fully_automatic"]``, and ``images.status`` (the annotators' queue) is untouched.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from backend.api.deps import CurrentUser, ProjectForJobStarter, SessionDep, SettingsDep, StorageDep
from backend.auto.schemas import AutoParams
from backend.clients.model_server import model_service
from backend.jobs import service as jobs
from backend.jobs.schemas import JobOut
from backend.model_versions.service import active_version

router = APIRouter(tags=["auto"])


@router.post("/api/projects/{project_id}/auto-annotate", status_code=status.HTTP_202_ACCEPTED)
def auto_annotate(
    project: ProjectForJobStarter,
    db: SessionDep,
    user: CurrentUser,
    storage: StorageDep,
    settings: SettingsDep,
    params: AutoParams | None = None,
) -> JobOut:
    chosen = params or AutoParams()

    def inputs() -> jobs.JobInputs:
        version = active_version(db, project, storage, model_service(settings, storage), settings)
        return jobs.JobInputs(
            {"model_version_id": version.id, "params": chosen.model_dump()},
            f"automatic masks with model version {version.id}",
        )

    return JobOut.model_validate(jobs.start_or_existing(db, settings, "auto", project.id, user.id, inputs).job)
