"""Embedding a project (a job) and serving one image's embedding to the browser.

``GET /api/images/{id}/embedding``: the embedding of the project's active model version as raw
little-endian C-order bytes in the wire encoding asked for (``encoding``: ``float16``, the
default, 1x256x64x64; or ``int8-per-channel``, half the bytes: 256 float32 scales, then int8 values;
both made by the model side, `ModelService.embedding_wire`),
with ``X-Embedding-Shape``, ``X-Embedding-Dtype`` (the encoding), ``X-Original-Size``,
``X-Input-Size`` and ``X-Model-Version`` headers and an ETag naming the version, image and
encoding; computed on demand (in this request) if the embedding job has not reached it.

Caching: the plain URL is sent with ``no-cache`` (the browser keeps it but revalidates, a 304 on
If-None-Match costs nothing), because it serves another embedding once the project's active version
changes. A URL naming the version (``?model_version=<id>``) names the embedding itself, so it is
sent ``immutable``: a revisit costs no request at all; asking it for a version that is no longer
the project's active one is a 409 (the page then reloads the model).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from backend.api.deps import CurrentUser, ImageForMember, ProjectForJobStarter, SessionDep, SettingsDep, StorageDep
from backend.api.types import MAX_DB_ID
from backend.clients.model_server import ModelServiceError, model_service
from backend.embeddings import service
from backend.jobs import service as jobs
from backend.jobs.schemas import JobOut
from backend.model_versions.service import active_version
from backend.tables import Project
from model_server import api

router = APIRouter(tags=["embeddings"])


class WireEncoding(StrEnum):
    """The browser's encodings of an embedding (`ModelService.embedding_wire`)."""

    float16 = api.WIRE_FLOAT16
    int8 = api.WIRE_INT8


@router.post("/api/projects/{project_id}/embed", status_code=status.HTTP_202_ACCEPTED)
def embed_project(
    project: ProjectForJobStarter, db: SessionDep, user: CurrentUser, storage: StorageDep, settings: SettingsDep
) -> JobOut:
    """Start (or return the already queued/running) job embedding the project's images."""
    version = active_version(db, project, storage, model_service(settings, storage), settings)
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


IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"


@router.get(
    "/api/images/{image_id}/embedding",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "1x256x64x64 in the encoding asked for"},
        304: {"description": "unchanged (If-None-Match)"},
        409: {"description": "`model_version` is not the project's active version"},
    },
)
def get_image_embedding(
    image: ImageForMember,
    request: Request,
    db: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    encoding: Annotated[WireEncoding, Query()] = WireEncoding.float16,
    model_version: Annotated[int | None, Query(ge=1, le=MAX_DB_ID)] = None,
) -> Response:
    client = model_service(settings, storage)
    project = db.get_one(Project, image.project_id)
    version = active_version(db, project, storage, client, settings)
    if model_version is not None and model_version != version.id:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"model version {model_version} is not the project's active one ({version.id})",
        )
    etag = f'"emb-{version.id}-{image.id}-{image.sha256[:16]}-{encoding.value}"'
    cache = {
        "ETag": etag,
        "Cache-Control": IMMUTABLE if model_version is not None else REVALIDATE,
        "X-Model-Version": str(version.id),
    }
    existing = service.find_embedding(db, image.id, version.id)
    if (
        existing is not None
        and etag in request.headers.get("If-None-Match", "")
        and storage.exists(existing.storage_key)
    ):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=cache)
    try:
        found = service.info(service.get_or_compute(db, storage, client, version, image))
        body = client.embedding_wire(found, encoding.value)
    except ModelServiceError as error:
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from None
    except ValueError as error:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(error)) from None
    headers = {
        **cache,
        **api.embedding_headers(found.original_size, found.input_size),
        api.HEADER_DTYPE: encoding.value,
    }
    return Response(content=body, media_type="application/octet-stream", headers=headers)
