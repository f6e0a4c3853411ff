"""Which model serves a project, and its browser decoder.

``GET /api/projects/{id}/model`` names the version and its origin plainly: ``untrained`` means
random weights (masks are meaningless) and the `notice` says how to import real ones.
``GET /api/model-versions/{id}/decoder.onnx`` serves the ONNX graph the annotator runs; a
version's files never change, so it is sent with a strong ETag and ``immutable`` caching.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel

from backend.api.deps import CurrentUser, ProjectForMember, SessionDep, SettingsDep, StorageDep, can_see_project
from backend.clients.model_server import ModelServerClient
from backend.model_versions import service
from backend.models import ModelVersion
from backend.models.enums import ModelOrigin, ModelStatus

router = APIRouter(tags=["models"])

UNTRAINED_NOTICE = (
    "This project is served by an UNTRAINED model (random weights): its masks are meaningless. "
    "Import official weights with `dataengine models import /path/to/sam_vit_b_01ec64.pth --arch vit_b`."
)


class ProjectModelOut(BaseModel):
    id: int
    name: str
    architecture: str
    origin: ModelOrigin
    status: ModelStatus
    sha256: str | None
    decoder_url: str
    notice: str | None


@router.get("/api/projects/{project_id}/model")
def get_project_model(
    project: ProjectForMember, db: SessionDep, storage: StorageDep, settings: SettingsDep
) -> ProjectModelOut:
    version = service.active_version(db, project, storage, ModelServerClient.from_settings(settings), settings)
    return ProjectModelOut(
        id=version.id, name=version.name, architecture=version.architecture, origin=version.origin,
        status=version.status, sha256=version.sha256,
        decoder_url=f"/api/model-versions/{version.id}/decoder.onnx",
        notice=UNTRAINED_NOTICE if version.origin == ModelOrigin.untrained else None,
    )


@router.get("/api/model-versions/{version_id}/decoder.onnx", response_model=None)
def get_decoder(version_id: int, request: Request, db: SessionDep, user: CurrentUser, storage: StorageDep) -> Response:
    version = db.get(ModelVersion, version_id)
    visible = version is not None and (version.project_id is None or can_see_project(db, user, version.project_id))
    key = version.artifacts.get("decoder_onnx") if visible else None
    if not visible or not key or not storage.exists(key):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"decoder of model version {version_id} not found")
    etag = f'"{version.artifacts.get("decoder_onnx_sha256") or version.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if etag in request.headers.get("If-None-Match", ""):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return FileResponse(storage.path(key), media_type="application/octet-stream", headers=headers,
                        filename=f"decoder-{version.architecture}-{version.id}.onnx")
