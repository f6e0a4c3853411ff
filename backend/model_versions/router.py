"""Which model serves a project, and its browser decoder.

``GET /api/projects/{id}/model`` names the version and its origin plainly: ``untrained`` means
random weights (masks are meaningless) and the `notice` says how to import real ones.
``GET /api/model-versions/{id}`` is the same answer for any version by id (the page decodes each
embedding with the decoder of the version ``X-Model-Version`` names, see backend/embeddings/router.py).
``GET /api/model-versions/{id}/decoder.onnx`` serves the one-graph decoder, and
``decoder.image.onnx`` + ``decoder.click.onnx`` the split decoder the annotator prefers (per-image
graph run once per image, per-click graph per click; `image_graph_url` / `click_graph_url` in the
model answer, null for versions stored before the split existed: the page then runs the one graph).
A version's files never change, so they are sent with a strong ETag and ``immutable`` caching.

The registry of a project (ML engineers): ``GET /api/projects/{id}/model-versions`` (with metrics),
``POST /api/projects/{id}/model-versions/{vid}/promote`` and ``POST .../model-versions/rollback``
(promote the active version's parent). 404 for another project's version, 409 for a version that
is not ready or a rollback without a parent.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel
from sqlalchemy.orm import Session

from backend.api.deps import (
    CurrentUser,
    ModelVersionForMember,
    ProjectForMember,
    ProjectForMlEngineer,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from backend.api.stored_files import stored_object
from backend.api.types import PathId
from backend.clients.model_server import model_service
from backend.core.config import Settings
from backend.jobs.schemas import JobOut
from backend.model_versions import promotion, service
from backend.model_versions.schemas import ModelVersionOut, PromotionOut
from backend.tables import ModelVersion, Project, User
from backend.tables.enums import ModelOrigin, ModelStatus
from model_server.api import Storage

router = APIRouter(tags=["models"])

UNTRAINED_NOTICE = (
    "This project is served by an UNTRAINED model (random weights): its masks are meaningless. "
    "Fetch official weights with `dataengine models download vit_b --make-default` (or, offline, "
    "`dataengine models import /path/to/sam_vit_b_01ec64.pth --arch vit_b --make-default`)."
)


class ProjectModelOut(BaseModel):
    id: int
    name: str
    architecture: str
    origin: ModelOrigin
    status: ModelStatus
    sha256: str | None
    decoder_url: str
    image_graph_url: str | None
    click_graph_url: str | None
    notice: str | None


def project_model_out(version: ModelVersion) -> ProjectModelOut:
    """What the annotate page needs to decode with `version`: its identity and its decoder graphs'
    URLs (one builder for the project's active model and for any version named by id)."""
    return ProjectModelOut(
        id=version.id,
        name=version.name,
        architecture=version.architecture,
        origin=version.origin,
        status=version.status,
        sha256=version.sha256,
        decoder_url=f"/api/model-versions/{version.id}/decoder.onnx",
        image_graph_url=_graph_url(version, "decoder.image.onnx"),
        click_graph_url=_graph_url(version, "decoder.click.onnx"),
        notice=UNTRAINED_NOTICE if version.origin == ModelOrigin.untrained else None,
    )


@router.get("/api/projects/{project_id}/model")
def get_project_model(
    project: ProjectForMember, db: SessionDep, storage: StorageDep, settings: SettingsDep
) -> ProjectModelOut:
    """The version serving the project (given the install's default on first use)."""
    return project_model_out(service.active_version(db, project, storage, model_service(settings, storage), settings))


@router.get("/api/model-versions/{version_id}")
def get_model_version(version: ModelVersionForMember) -> ProjectModelOut:
    """A version by id, as the project's model: the decoder of the version named by an embedding's
    ``X-Model-Version`` (which may be the previously serving one while the project is re-embedded)."""
    return project_model_out(version)


# Served decoder graphs: URL file name -> artifact name in `ModelVersion.artifacts`.
DECODER_GRAPHS = {
    "decoder.onnx": "decoder_onnx",
    "decoder.image.onnx": "decoder_image_onnx",
    "decoder.click.onnx": "decoder_click_onnx",
}


def _graph_url(version: ModelVersion, file_name: str) -> str | None:
    """The URL serving decoder graph `file_name` of `version`, or None when the version lacks it."""
    if not version.artifacts.get(DECODER_GRAPHS[file_name]):
        return None
    return f"/api/model-versions/{version.id}/{file_name}"


def _serve_graph(version: ModelVersion, file_name: str, request: Request, storage: Storage) -> Response:
    artifact = DECODER_GRAPHS[file_name]
    key = version.artifacts.get(artifact)
    missing = f"{file_name} of model version {version.id} not found"
    if not key or not storage.exists(key):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=missing)
    etag = f'"{version.artifacts.get(f"{artifact}_sha256") or version.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if etag in request.headers.get("If-None-Match", ""):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    stem = file_name.removesuffix(".onnx")
    return stored_object(
        storage,
        key,
        "application/octet-stream",
        missing=missing,
        headers=headers,
        filename=f"{stem}-{version.architecture}-{version.id}.onnx",
    )


@router.get("/api/model-versions/{version_id}/decoder.onnx", response_model=None)
def get_decoder(version: ModelVersionForMember, request: Request, storage: StorageDep) -> Response:
    """The one-graph decoder (fallback of the split pair)."""
    return _serve_graph(version, "decoder.onnx", request, storage)


@router.get("/api/model-versions/{version_id}/decoder.image.onnx", response_model=None)
def get_decoder_image_graph(version: ModelVersionForMember, request: Request, storage: StorageDep) -> Response:
    """The split decoder's per-image graph (404 for versions stored before the split existed)."""
    return _serve_graph(version, "decoder.image.onnx", request, storage)


@router.get("/api/model-versions/{version_id}/decoder.click.onnx", response_model=None)
def get_decoder_click_graph(version: ModelVersionForMember, request: Request, storage: StorageDep) -> Response:
    """The split decoder's per-click graph (404 for versions stored before the split existed)."""
    return _serve_graph(version, "decoder.click.onnx", request, storage)


# The registry of a project (ML engineer page): list, promote, roll back. See `promotion`.


def _version_out(version: ModelVersion, project: Project) -> ModelVersionOut:
    fields = {name: getattr(version, name) for name in ModelVersionOut.model_fields if hasattr(version, name)}
    return ModelVersionOut(
        **fields,
        active=version.id == project.active_model_version_id,
        decoder_url=f"/api/model-versions/{version.id}/decoder.onnx",
    )


@router.get("/api/projects/{project_id}/model-versions")
def list_model_versions(
    project: ProjectForMember, db: SessionDep, storage: StorageDep, settings: SettingsDep
) -> list[ModelVersionOut]:
    """The project's versions and the global ones, newest first, each with its held-out metrics."""
    service.active_version(db, project, storage, model_service(settings, storage), settings)
    return [_version_out(v, project) for v in promotion.project_versions(db, project)]


def _promote(
    db: Session, project: Project, version: ModelVersion | None, user: User, settings: Settings
) -> PromotionOut:
    try:
        previous, job, reused = promotion.promote(db, project, version, user.id, settings)
    except LookupError as error:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    except promotion.PromotionError as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    if job is not None:
        db.refresh(job)
    assert version is not None  # promote() raised LookupError otherwise
    return PromotionOut(
        model=_version_out(version, project),
        previous_id=previous,
        embed_job=JobOut.model_validate(job) if job is not None else None,
        embeddings_reused=reused,
    )


@router.post("/api/projects/{project_id}/model-versions/{version_id}/promote")
def promote_model_version(
    version_id: PathId, project: ProjectForMlEngineer, db: SessionDep, user: CurrentUser, settings: SettingsDep
) -> PromotionOut:
    """Make the version the project's active one (rolling back is promoting an earlier version)."""
    return _promote(db, project, db.get(ModelVersion, version_id), user, settings)


@router.post("/api/projects/{project_id}/model-versions/rollback")
def rollback_model_version(
    project: ProjectForMlEngineer, db: SessionDep, user: CurrentUser, settings: SettingsDep
) -> PromotionOut:
    """Promote the active version's parent."""
    try:
        target = promotion.rollback_target(db, project)
    except promotion.PromotionError as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    return _promote(db, project, target, user, settings)
