"""Export and import endpoints (formats: `backend.exchange.formats`).

- ``GET /api/projects/{id}/export?format=...&include_images=false&polygon_tolerance=0.5``: the
  archive as a streamed tar (managers, ML engineers). A project with more than
  ``settings.export_stream_max_images`` images gets 409 naming the job endpoint instead: one request
  should not hold a worker thread for hours.
- ``POST /api/projects/{id}/exports`` `{format, include_images, polygon_tolerance}` → 202 `JobOut`
  (managers, ML engineers); when it succeeds its ``result.download_url`` is
- ``GET /api/exports/{job_id}/file``: the archive the job wrote.
- ``POST /api/projects/{id}/images/from-urls`` `{urls}` → 202 `JobOut`: images downloaded and stored as
  uploads (`url_images`).
- ``POST /api/projects/{id}/import/{format}?file_name=...`` (body: the annotation file, or a zip/tar
  of files, named in the report by ``file_name``; ``format`` ``auto`` detects it; managers, ML engineers) → counts per file; 422 naming each problem's
  file and place (``errors``), and nothing stored, when anything is wrong.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, HttpUrl
from sqlalchemy.orm import Session
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
from backend.api.errors import ErrorItem, ErrorOut
from backend.api.stored_files import stored_object
from backend.api.types import RequestModel
from backend.core.outbound import BlockedTarget, check_target
from backend.exchange import bucket_images, formats, source, url_images
from backend.exchange.archive import export_chunks
from backend.exchange.formats.common import DEFAULT_TOLERANCE, ExportOptions
from backend.exchange.importing import ImportRefused, import_upload, read_upload
from backend.exchange.polygons import MAX_TOLERANCE
from backend.images.service import clean_file_name
from backend.jobs import service as jobs
from backend.jobs.schemas import JobOut
from backend.tables import Job, Project, User
from backend.tables.enums import JobStatus

router = APIRouter(tags=["exchange"])

ExportJob = Annotated[Job, Depends(job_for(*JOB_STARTERS))]
Format = Literal["sa1b", "coco", "coco_polygons", "yolo", "voc", "png"]
ImportFormat = Literal["auto", "coco", "yolo", "cvat", "label_studio", "labelme", "png"]
Tolerance = Annotated[
    float,
    Field(ge=0, le=MAX_TOLERANCE, description="polygon formats: Douglas-Peucker tolerance in pixels (0: exact)"),
]


class ExportIn(RequestModel):
    format: Format = "sa1b"
    include_images: bool = False
    polygon_tolerance: Tolerance = DEFAULT_TOLERANCE


class UrlsIn(RequestModel):
    urls: Annotated[list[Annotated[HttpUrl, Field(strict=False)]], Field(min_length=1, max_length=url_images.MAX_URLS)]


class BucketIn(RequestModel):
    source: Annotated[str, Field(min_length=1, max_length=64, description="a name of the server's import sources")]
    prefix: Annotated[str, Field(max_length=1024, description='the keys to import start with it ("": all)')] = ""


class FileOut(BaseModel):
    file: str
    masks: int
    images: int
    skipped: dict[str, int]  # shapes that are not masks (polylines, keypoints, ...), by kind


class ImportOut(BaseModel):
    format: str
    imported: int
    already_present: int
    images: int
    files: list[FileOut]


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
    polygon_tolerance: Annotated[float, Query(ge=0, le=MAX_TOLERANCE)] = DEFAULT_TOLERANCE,
) -> StreamingResponse:
    count = source.count_images(db, project.id)
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
    options = ExportOptions(polygon_tolerance=polygon_tolerance)

    def chunks():  # its own session: the request's closes when the route returns
        with sessions() as session:
            yield from export_chunks(session, storage, project_id, format, include_images, options=options)

    return StreamingResponse(
        chunks(),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{_archive_name(project.id, format)}"'},
    )


@router.post("/api/projects/{project_id}/exports", status_code=status.HTTP_202_ACCEPTED)
def start_export(
    project: ProjectForJobStarter, body: ExportIn, db: SessionDep, user: CurrentUser, settings: SettingsDep
) -> JobOut:
    """A new export job, or the queued/running one that exports the same thing."""
    params = body.model_dump()
    started = jobs.start_or_existing(
        db,
        settings,
        "export",
        project.id,
        user.id,
        lambda: jobs.JobInputs(params, f"{body.format} export queued"),
        reuse=lambda pending: pending.params == params,
    )
    return JobOut.model_validate(started.job)


@router.post("/api/projects/{project_id}/images/from-urls", status_code=status.HTTP_202_ACCEPTED)
def import_images_from_urls(
    project: ProjectForJobStarter, body: UrlsIn, db: SessionDep, user: CurrentUser, settings: SettingsDep
) -> JobOut:
    """A job that downloads the images and stores them as uploads (`backend.exchange.url_images`).
    Each host is checked once here (a private one is a 422); each request is checked again when made."""
    params = {"urls": [str(url) for url in body.urls]}
    one_url_per_host = {(url.scheme, url.host, url.port): str(url) for url in body.urls}
    try:
        for url in one_url_per_host.values():
            check_target(url, settings.outbound_allowed_networks)
    except BlockedTarget as error:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(error)) from None
    started = jobs.start_or_existing(
        db,
        settings,
        "import_urls",
        project.id,
        user.id,
        lambda: jobs.JobInputs(params, f"importing {len(body.urls)} URLs"),
        reuse=lambda pending: pending.params == params,
    )
    return JobOut.model_validate(started.job)


@router.post("/api/projects/{project_id}/images/from-bucket", status_code=status.HTTP_202_ACCEPTED)
def import_images_from_bucket(
    project: ProjectForJobStarter, body: BucketIn, db: SessionDep, user: CurrentUser, settings: SettingsDep
) -> JobOut:
    """A job that reads the images under `prefix` of one of the import sources the operator configured
    and stores them as uploads (`backend.exchange.bucket_images`)."""
    try:
        bucket_images.source_storage(settings.import_sources, body.source, body.prefix)
    except KeyError:
        names = ", ".join(sorted(settings.import_sources)) or "none"
        raise HTTPException(
            status_code=422, detail=f"unknown import source {body.source!r} (configured: {names})"
        ) from None
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    params = body.model_dump()
    started = jobs.start_or_existing(
        db,
        settings,
        "import_bucket",
        project.id,
        user.id,
        lambda: jobs.JobInputs(params, f"importing {body.source}:{body.prefix}"),
        reuse=lambda pending: pending.params == params,
    )
    return JobOut.model_validate(started.job)


@router.get(
    "/api/exports/{job_id}/file",
    response_class=Response,
    responses={
        200: {"content": {"application/x-tar": {}}, "description": "the archive, streamed"},
        307: {"description": "redirect to a short-lived URL of the object store (S3 storage)"},
    },
)
def download_export(job: ExportJob, storage: StorageDep) -> Response:
    job_id = job.id
    if job.kind != "export" or job.project_id is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"export {job_id} not found")
    key = (job.result or {}).get("storage_key")
    if job.status != JobStatus.succeeded or not key or not storage.exists(key):
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT, detail=f"export {job_id} is not ready (job status {job.status.value})"
        )
    return stored_object(
        storage,
        key,
        "application/x-tar",
        missing=f"export {job_id} is missing from storage",
        filename=_archive_name(job.project_id, job.params["format"]),
    )


def _refused(fmt: str, error: ImportRefused) -> JSONResponse:
    items = [
        ErrorItem(loc=[p.file, p.where] if p.where else [p.file], msg=p.message, type="import") for p in error.problems
    ]
    detail = f"{fmt} import refused, nothing imported: {error}"
    return JSONResponse(ErrorOut(detail=detail, errors=items).model_dump(), status_code=422)


def _import(db: Session, project: Project, user: User, body: bytes, name: str, fmt: str) -> ImportOut:
    files = read_upload(body, name)
    if fmt == "auto":
        detected = formats.detect(files)
        if detected is None:
            raise ImportRefused.single(
                name, f"its format is none of {', '.join(formats.IMPORTERS)}: name it in the path (/import/<format>)"
            )
        fmt = detected
    report = import_upload(db, project, user, body, files, fmt, formats.IMPORTERS[fmt])
    return ImportOut(
        format=report.format,
        imported=report.imported,
        already_present=report.already_present,
        images=report.images,
        files=[FileOut(file=f.file, masks=f.masks, images=f.images, skipped=f.skipped) for f in report.files],
    )


@router.post(
    "/api/projects/{project_id}/import/{format}",
    status_code=status.HTTP_201_CREATED,
    response_model=ImportOut,
    responses={422: {"model": ErrorOut, "description": "refused: `errors` names each problem's file and place"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the annotation file (JSON, XML) or a zip/tar of files",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def import_file(
    project: ProjectForJobStarter,
    format: ImportFormat,
    request: Request,
    db: SessionDep,
    user: CurrentUser,
    file_name: Annotated[
        str, Query(min_length=1, max_length=255, description="the uploaded file's name, for the report")
    ] = "upload",
) -> ImportOut | JSONResponse:
    body = await request.body()
    try:
        return await run_in_threadpool(_import, db, project, user, body, clean_file_name(file_name), format)
    except ImportRefused as error:
        return _refused(format, error)
