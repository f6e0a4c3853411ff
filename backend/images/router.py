"""Image upload, listing, metadata, original file and thumbnail.

Upload and delete need the role manager in the project (or admin); everything else any member.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, UploadFile, status
from fastapi.responses import FileResponse

from backend.api.deps import (
    ImageForManager, ImageForMember, ProjectForManager, ProjectForMember, SessionDep, SettingsDep, StorageDep,
)
from backend.api.types import MAX_DB_INT
from backend.images import service
from backend.images.schemas import DuplicateOut, ImageOut, UploadOut
from backend.models import ImageStatus

router = APIRouter(tags=["images"])

MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png"}
# Stored files never change (content-addressed): let the browser keep them.
IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}


@router.post("/api/projects/{project_id}/images", status_code=status.HTTP_201_CREATED)
def upload_images(
    project: ProjectForManager,
    db: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    files: Annotated[list[UploadFile], File(description="one or more image files")] = [],  # noqa: B006
) -> UploadOut:
    if not files:
        raise HTTPException(status_code=400, detail="no files in the upload (multipart field `files`)")
    if len(files) > settings.max_files_per_request:
        raise HTTPException(status_code=413, detail=f"{len(files)} files exceed the limit of {settings.max_files_per_request} per request")
    incoming = [service.IncomingFile(f.filename or "", f.file) for f in files]
    try:
        result = service.upload_images(db, storage, settings, project, incoming)
    except service.UploadRejected as exc:
        raise HTTPException(status_code=exc.status_code, detail=f"upload refused, nothing stored: {exc}") from exc
    except service.UploadConflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    return UploadOut(
        images=[ImageOut.model_validate(i) for i in result.images],
        duplicates=[DuplicateOut(file_name=d.file_name, image_id=d.image_id) for d in result.duplicates],
    )


@router.get("/api/projects/{project_id}/images")
def list_images(
    project: ProjectForMember,
    db: SessionDep,
    status_: Annotated[ImageStatus | None, Query(alias="status")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ImageOut]:
    return [ImageOut.model_validate(i) for i in service.list_images(db, project, status_, offset, limit)]


@router.get("/api/images/{image_id}")
def get_image(image: ImageForMember) -> ImageOut:
    return ImageOut.model_validate(image)


@router.delete("/api/images/{image_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_image(image: ImageForManager, db: SessionDep, storage: StorageDep, settings: SettingsDep) -> None:
    """The image with its masks, reviews, embeddings, proposals and files (managers of its project)."""
    service.delete_image(db, storage, image, settings.thumbnail_size)


@router.get("/api/images/{image_id}/file", response_class=FileResponse)
def get_image_file(image: ImageForMember, storage: StorageDep) -> FileResponse:
    ext = image.storage_key.rsplit(".", 1)[-1]
    return FileResponse(
        storage.path(image.storage_key), media_type=MEDIA_TYPES.get(ext, "application/octet-stream"),
        headers={**IMMUTABLE, "ETag": f'"{image.sha256}"'},
    )


@router.get("/api/images/{image_id}/thumbnail", response_class=FileResponse)
def get_thumbnail(image: ImageForMember, storage: StorageDep, settings: SettingsDep) -> FileResponse:
    key = service.ensure_thumbnail(storage, image, settings.thumbnail_size)
    return FileResponse(
        storage.path(key), media_type="image/jpeg",
        headers={**IMMUTABLE, "ETag": f'"{image.sha256}-{settings.thumbnail_size}"'},
    )
