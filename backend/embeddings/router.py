"""Embedding a project (a job) and serving one image's embedding to the browser.

``GET /api/images/{id}/embedding``: the float16 embedding of the project's active model version as
raw little-endian C-order bytes (1x256x64x64), with ``X-Embedding-Shape``, ``X-Embedding-Dtype``,
``X-Original-Size``, ``X-Input-Size`` and ``X-Model-Version`` headers and an ETag naming the
version and image; computed on demand (in this request) if the embedding job has not reached it.
It is sent with ``no-cache``: the browser keeps it but revalidates (a 304 costs nothing), because
the same URL serves another embedding once the project's active version changes.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from backend.api.deps import CurrentUser, ImageForMember, ProjectForJobStarter, SessionDep, SettingsDep, StorageDep
from backend.clients.model_server import ModelServerClient, ModelServerError
from backend.embeddings import service
from backend.jobs import service as jobs
from backend.jobs.schemas import JobOut
from backend.model_versions.service import active_version, model_spec
from backend.tables import Project
from model_server import api

router = APIRouter(tags=["embeddings"])


@router.post("/api/projects/{project_id}/embed", status_code=status.HTTP_202_ACCEPTED)
def embed_project(
    project: ProjectForJobStarter, db: SessionDep, user: CurrentUser, storage: StorageDep, settings: SettingsDep
) -> JobOut:
    """Start (or return the already queued/running) job embedding the project's images."""
    version = active_version(db, project, storage, ModelServerClient.from_settings(settings), settings)
    started = jobs.start_or_existing(
        db,
        settings,
        "embed",
        project.id,
        user.id,
        lambda: jobs.JobInputs({"model_version_id": version.id}, f"embedding with model version {version.id}"),
        reuse=lambda pending: pending.params.get("model_version_id") == version.id,
    )
    return JobOut.model_validate(started.job)


@router.get(
    "/api/images/{image_id}/embedding",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "float16 1x256x64x64"},
        304: {"description": "unchanged (If-None-Match)"},
    },
)
def get_image_embedding(
    image: ImageForMember, request: Request, db: SessionDep, storage: StorageDep, settings: SettingsDep
) -> Response:
    client = ModelServerClient.from_settings(settings)
    project = db.get(Project, image.project_id)
    version = active_version(db, project, storage, client, settings)
    etag = f'"emb-{version.id}-{image.id}-{image.sha256[:16]}"'
    cache = {"ETag": etag, "Cache-Control": "private, no-cache", "X-Model-Version": str(version.id)}
    existing = service.find_embedding(db, image.id, version.id)
    if (
        existing is not None
        and etag in request.headers.get("If-None-Match", "")
        and storage.exists(existing.storage_key)
    ):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=cache)
    try:
        row = service.get_or_compute(db, storage, client, version, model_spec(version, storage), image)
    except ModelServerError as error:
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from None
    except ValueError as error:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(error)) from None
    emb = service.read_embedding(storage, row)
    headers = {**cache, **api.embedding_headers(emb.original_size, emb.input_size)}
    return Response(content=emb.data, media_type="application/octet-stream", headers=headers)
