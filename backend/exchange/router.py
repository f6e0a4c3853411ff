"""Export and import endpoints.

- ``GET /api/projects/{id}/export?format=sa1b|coco&include_images=false``: the archive as a streamed
  tar (managers, ML engineers). A project with more than ``settings.export_stream_max_images`` images gets 409
  naming the job endpoint instead: one request should not hold a worker thread for hours.
- ``POST /api/projects/{id}/exports`` `{format, include_images}` → 202 `JobOut` (managers, ML
  engineers); when it succeeds its ``result.download_url`` is
- ``GET /api/exports/{job_id}/file``: the archive the job wrote.
- ``POST /api/projects/{id}/import/coco`` (body: COCO instances JSON; managers, ML engineers) →
  counts; 422 naming the offending annotations, and nothing stored, when anything is wrong.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from backend.api.deps import (
    JOB_STARTERS,
    CurrentUser,
    ProjectForJobStarter,
    SessionDep,
    SettingsDep,
    StorageDep,
    job_for,
)
from backend.api.types import RequestModel
from backend.exchange import formats
from backend.exchange.archive import export_chunks
from backend.exchange.coco_import import CocoImportError, import_coco
from backend.jobs import service as jobs
from backend.jobs.schemas import JobOut
from backend.tables import Job
from backend.tables.enums import JobStatus

router = APIRouter(tags=["exchange"])

ExportJob = Annotated[Job, Depends(job_for(*JOB_STARTERS))]
Format = Literal["sa1b", "coco"]


class ExportIn(RequestModel):
    format: Format = "sa1b"
    include_images: bool = False


class ImportOut(BaseModel):
    imported: int
    already_present: int
    images: int


def _archive_name(project_id: int, fmt: str) -> str:
    return f"project-{project_id}-{fmt}.tar"


@router.get(
    "/api/projects/{project_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-tar": {}}}, 409: {"description": "too large: use a job"}},
)
def export_project(
    project: ProjectForJobStarter,
    db: SessionDep,
    request: Request,
    settings: SettingsDep,
    storage: StorageDep,
    format: Format = "sa1b",
    include_images: bool = False,
) -> StreamingResponse:
    count = formats.count_images(db, project.id)
    if count > settings.export_stream_max_images:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=(
                f"project {project.id} has {count} images (more than {settings.export_stream_max_images}): "
                f"export it as a job with POST /api/projects/{project.id}/exports"
            ),
        )
    sessions = request.app.state.session_factory
    project_id = project.id

    def chunks():  # its own session: the request's closes when the route returns
        with sessions() as session:
            yield from export_chunks(session, storage, project_id, format, include_images)

    return StreamingResponse(
        chunks(),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{_archive_name(project.id, format)}"'},
    )


@router.post("/api/projects/{project_id}/exports", status_code=status.HTTP_202_ACCEPTED)
def start_export(
    project: ProjectForJobStarter, body: ExportIn, db: SessionDep, user: CurrentUser, settings: SettingsDep
) -> JobOut:
    job = jobs.create_job(db, "export", project.id, user.id, message=f"{body.format} export queued")
    job.result = {**job.result, "format": body.format, "include_images": body.include_images}
    jobs.submit(db, job, settings)
    db.refresh(job)
    return JobOut.model_validate(job)


@router.get("/api/exports/{job_id}/file", response_class=FileResponse)
def download_export(job: ExportJob, storage: StorageDep) -> FileResponse:
    job_id = job.id
    if job.kind != "export" or job.project_id is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"export {job_id} not found")
    key = (job.result or {}).get("storage_key")
    if job.status != JobStatus.succeeded or not key or not storage.exists(key):
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT, detail=f"export {job_id} is not ready (job status {job.status.value})"
        )
    return FileResponse(
        storage.path(key), media_type="application/x-tar", filename=_archive_name(job.project_id, job.result["format"])
    )


@router.post("/api/projects/{project_id}/import/coco", status_code=status.HTTP_201_CREATED)
async def import_coco_file(
    project: ProjectForJobStarter, request: Request, db: SessionDep, user: CurrentUser
) -> ImportOut:
    body = await request.body()
    try:
        result = await run_in_threadpool(import_coco, db, project, user, body)
    except CocoImportError as error:
        raise HTTPException(status_code=422, detail=f"COCO import refused, nothing imported: {error}") from None
    return ImportOut(imported=result.imported, already_present=result.already_present, images=result.images)
