"""Image upload, listing, assignment, metadata, original file and thumbnail.

Upload, assignment and delete need the role manager in the project (or admin); everything else any member.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, Response, UploadFile, status

from backend.api.deps import (
    CurrentUser,
    ImageForManager,
    ImageForMember,
    ProjectForManager,
    ProjectForMember,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from backend.api.stored_files import stored_object
from backend.api.types import MAX_DB_ID
from backend.images import service
from backend.images.schemas import AssignIn, DuplicateOut, ImageOut, RefusedOut, UploadOut
from backend.tables import ImageStatus

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
    partial: Annotated[
        bool,
        Query(
            description="store the good files and list the others in `refused` "
            "(default: any refused file fails the whole upload)"
        ),
    ] = False,
) -> UploadOut:
    if not files:
        raise HTTPException(status_code=400, detail="no files in the upload (multipart field `files`)")
    if len(files) > settings.max_files_per_request:
        raise HTTPException(
            status_code=413,
            detail=f"{len(files)} files exceed the limit of {settings.max_files_per_request} per request",
        )
    incoming = [service.IncomingFile(f.filename or "", f.file) for f in files]
    try:
        result = service.upload_images(db, storage, settings, project, incoming, partial=partial)
    except service.UploadRejected as exc:
        raise HTTPException(status_code=exc.status_code, detail=f"upload refused, nothing stored: {exc}") from exc
    except service.UploadConflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    return UploadOut(
        images=[ImageOut.model_validate(i) for i in result.images],
        duplicates=[DuplicateOut(file_name=d.file_name, image_id=d.image_id) for d in result.duplicates],
        refused=[RefusedOut(file_name=r.file_name, reason=r.reason) for r in result.rejected],
    )


TOTAL_COUNT = {
    "X-Total-Count": {"description": "how many images match the filters, over all pages", "schema": {"type": "integer"}}
}


@router.get("/api/projects/{project_id}/images", responses={200: {"headers": TOTAL_COUNT}})
def list_images(
    project: ProjectForMember,
    db: SessionDep,
    response: Response,
    status_: Annotated[ImageStatus | None, Query(alias="status")] = None,
    assigned_to: Annotated[
        int | None, Query(ge=1, le=MAX_DB_ID, description="only images assigned to this user")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ImageOut]:
    page, total = service.list_images(db, project, status_, assigned_to, offset, limit)
    response.headers["X-Total-Count"] = str(total)
    return [ImageOut.model_validate(i) for i in page]


@router.get(
    "/api/projects/{project_id}/images/next",
    responses={204: {"description": "no unfinished image is free"}},
)
def peek_next_image(
    project: ProjectForMember,
    db: SessionDep,
    user: CurrentUser,
    exclude: Annotated[int | None, Query(ge=1, le=MAX_DB_ID, description="the image the caller is finishing")] = None,
) -> Response:
    """The image `POST /api/projects/{id}/claim` would give the caller now, without locking it: the
    annotate page prefetches it (bitmap, embedding, masks) so that *Done, next* shows it at once."""
    image = service.peek_next_image(db, project, user, exclude)
    if image is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return Response(ImageOut.model_validate(image).model_dump_json(), media_type="application/json")


@router.post("/api/images/{image_id}/assign")
def assign_image(body: AssignIn, image: ImageForManager, db: SessionDep) -> ImageOut:
    """Reserve the image for one member (`user_id`), or free it (`null`): `claim next` gives a user
    their assigned images first and never one assigned to someone else; claiming it directly is
    refused to others (409), except the project's managers."""
    try:
        return ImageOut.model_validate(service.assign_image(db, image, body.user_id))
    except service.NotAMember as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


@router.get("/api/images/{image_id}")
def get_image(image: ImageForMember) -> ImageOut:
    return ImageOut.model_validate(image)


@router.delete("/api/images/{image_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_image(image: ImageForManager, db: SessionDep, storage: StorageDep, settings: SettingsDep) -> None:
    """The image with its masks, reviews, embeddings, proposals and files (managers of its project)."""
    service.delete_image(db, storage, image, settings.thumbnail_size)


FILE_RESPONSES: dict[int | str, dict] = {
    200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "the stored bytes"},
    307: {"description": "redirect to a short-lived URL of the object store (S3 storage)"},
}


@router.get("/api/images/{image_id}/file", response_class=Response, responses=FILE_RESPONSES)
def get_image_file(image: ImageForMember, storage: StorageDep) -> Response:
    """The stored image: streamed, or a redirect to the object store (`backend.api.stored_files`)."""
    ext = image.storage_key.rsplit(".", 1)[-1]
    return stored_object(
        storage,
        image.storage_key,
        MEDIA_TYPES.get(ext, "application/octet-stream"),
        missing=f"the file of image {image.id} is missing from storage",
        headers={**IMMUTABLE, "ETag": f'"{image.sha256}"'},
    )


@router.get("/api/images/{image_id}/thumbnail", response_class=Response, responses=FILE_RESPONSES)
def get_thumbnail(image: ImageForMember, storage: StorageDep, settings: SettingsDep) -> Response:
    """The JPEG thumbnail (made on first request): streamed, or a redirect to the object store."""
    try:
        key = service.ensure_thumbnail(storage, image, settings.thumbnail_size)
    except KeyError:
        raise HTTPException(status_code=404, detail=f"the file of image {image.id} is missing from storage") from None
    return stored_object(
        storage,
        key,
        "image/jpeg",
        missing=f"the thumbnail of image {image.id} is missing from storage",
        headers={**IMMUTABLE, "ETag": f'"{image.sha256}-{settings.thumbnail_size}"'},
    )
