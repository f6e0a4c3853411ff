"""Embedding a project (a job) and serving one image's embedding to the browser.

``GET /api/images/{id}/embedding``: an embedding of the image as raw little-endian C-order bytes in
the wire encoding asked for (``encoding``: ``float16``, the default, 1x256x64x64; or
``int8-per-channel``, half the bytes: 256 float32 scales, then int8 values; both made by the model
side, `ModelService.embedding_wire`), with ``X-Embedding-Shape``, ``X-Embedding-Dtype`` (the
encoding), ``X-Original-Size``, ``X-Input-Size`` and ``X-Model-Version`` headers and an ETag naming
the version, image and encoding.

Which version's embedding (`_serving`): ``X-Model-Version`` always names the version whose IMAGE
ENCODER made the bytes, and the browser decodes them with THAT version's decoder
(``GET /api/model-versions/{id}``): an embedding never meets another version's decoder.

* Without ``model_version``: the project's active version's embedding if stored. Else, while an embed
  job of the project for the active version is queued or running (after promoting a version with a
  new image encoder), the newest stored embedding of the image by another ready version of the
  project (the one that served it before): the page keeps working with the previous model until the
  job reaches the image. Else it is computed with the active version in this request.
* With ``model_version=V``: served if V is the active version, or if V's embedding of the image is
  stored and the active version's is not yet (what an unpinned request may have answered); else 409
  (the page then reloads the model).

Caching: the plain URL is sent with ``no-cache`` (the browser keeps it but revalidates, a 304 on
If-None-Match costs nothing), because it serves another embedding once the project's active version
changes or the embed job reaches the image (the ETag names the version served, so it changes then).
A URL naming the version names the embedding itself, so it is sent ``immutable``: a revisit costs
no request at all.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.api.deps import CurrentUser, ImageForMember, ProjectForJobStarter, SessionDep, SettingsDep, StorageDep
from backend.api.types import MAX_DB_ID
from backend.clients.model_server import ModelServiceError, model_service
from backend.embeddings import service
from backend.jobs import service as jobs
from backend.jobs.schemas import JobOut
from backend.model_versions.promotion import pending_embed_job
from backend.model_versions.service import active_version
from backend.tables import Embedding, Image, ModelStatus, ModelVersion, Project
from model_server import api
from model_server.api import Storage

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


def _stored(db: Session, storage: Storage, image_id: int, version_id: int) -> Embedding | None:
    """The image's embedding row of the version, if its object is stored."""
    row = service.find_embedding(db, image_id, version_id)
    return row if row is not None and storage.exists(row.storage_key) else None


def _previous(db: Session, storage: Storage, project: Project, image: Image, active: ModelVersion) -> Embedding | None:
    """The newest stored embedding of the image by another ready version of the project (or a global
    one): the version that served the image before the active one, whose decoder the page can load."""
    rows = db.scalars(
        select(Embedding)
        .join(ModelVersion, ModelVersion.id == Embedding.model_version_id)
        .where(
            Embedding.image_id == image.id,
            Embedding.model_version_id != active.id,
            ModelVersion.status == ModelStatus.ready,
            (ModelVersion.project_id == project.id) | ModelVersion.project_id.is_(None),
        )
        .order_by(Embedding.id.desc())
    )
    return next((row for row in rows if storage.exists(row.storage_key)), None)


def _serving(
    db: Session, storage: Storage, project: Project, image: Image, active: ModelVersion, pinned: int | None
) -> tuple[ModelVersion, Embedding | None]:
    """(the version whose embedding answers, its stored row or None = compute it now), by the rule of
    the module docstring. Raises 409 for a pinned version that may not answer."""
    stored = _stored(db, storage, image.id, active.id)
    if pinned is None or pinned == active.id:
        if stored is None and pinned is None and pending_embed_job(db, project.id, active.id) is not None:
            previous = _previous(db, storage, project, image, active)
            if previous is not None:
                return db.get_one(ModelVersion, previous.model_version_id), previous
        return active, stored
    version = db.get(ModelVersion, pinned)
    row = _stored(db, storage, image.id, pinned) if stored is None else None
    if (
        version is None
        or row is None
        or version.status != ModelStatus.ready
        or version.project_id not in (None, project.id)
    ):
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"model version {pinned} is not the project's active one ({active.id})"
            + ("" if stored is not None else " and has no stored embedding of this image"),
        )
    return version, row


@router.get(
    "/api/images/{image_id}/embedding",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "1x256x64x64 in the encoding asked for"},
        304: {"description": "unchanged (If-None-Match)"},
        409: {
            "description": "`model_version` may not answer: not the active version, nor one whose stored "
            "embedding of the image is served while the active version's is missing"
        },
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
    """The image's embedding and the version whose encoder made it (`X-Model-Version`); see the module docstring."""
    client = model_service(settings, storage)
    project = db.get_one(Project, image.project_id)
    active = active_version(db, project, storage, client, settings)
    version, row = _serving(db, storage, project, image, active, model_version)
    etag = f'"emb-{version.id}-{image.id}-{image.sha256[:16]}-{encoding.value}"'
    cache = {
        "ETag": etag,
        "Cache-Control": IMMUTABLE if model_version is not None else REVALIDATE,
        "X-Model-Version": str(version.id),
    }
    if row is not None and etag in request.headers.get("If-None-Match", ""):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=cache)
    try:
        found = service.info(row if row is not None else service.get_or_compute(db, storage, client, version, image))
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
