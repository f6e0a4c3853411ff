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
from sqlalchemy import select

from backend.api.deps import CurrentUser, ProjectForJobStarter, SessionDep, SettingsDep, StorageDep
from backend.auto.schemas import AutoParams
from backend.clients.model_server import ModelServerClient
from backend.jobs import service as jobs
from backend.jobs.schemas import JobOut
from backend.model_versions.service import active_version
from backend.tables import Job
from backend.tables.enums import JobStatus

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
    params = params or AutoParams()
    pending = db.scalar(
        select(Job)
        .where(Job.project_id == project.id, Job.kind == "auto", Job.status.in_((JobStatus.queued, JobStatus.running)))
        .order_by(Job.id.desc())
    )
    if pending is not None:
        return JobOut.model_validate(pending)
    version = active_version(db, project, storage, ModelServerClient.from_settings(settings), settings)
    job = jobs.create_job(db, "auto", project.id, user.id, message=f"automatic masks with model version {version.id}")
    job.result = {**job.result, "model_version_id": version.id, "params": params.model_dump()}
    jobs.submit(db, job, settings)
    db.refresh(job)
    return JobOut.model_validate(job)
