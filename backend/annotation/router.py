"""Claiming images and saving masks: thin routes over `backend.annotation.service`.

Any member of the project may annotate; non-members get 404 (as for unknown ids). Saving or deleting
a mask needs the caller's live claim on the image (409 otherwise) unless their role in the project is
manager (or admin); someone else's manual mask is a manager's to delete (403). An image assigned to
another user cannot be claimed (409) but by a manager; an archived project takes no claims or mask
changes (409).
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy.orm import Session

from backend.annotation import service
from backend.annotation.schemas import MaskCreate, MaskOut
from backend.api.deps import (
    CurrentUser,
    ImageForMember,
    MaskForMember,
    ProjectForMember,
    SessionDep,
    SettingsDep,
    project_role,
)
from backend.images.schemas import ImageOut
from backend.masks.rle import InvalidRle
from backend.tables import Project, Role, User

router = APIRouter(tags=["annotation"])


def _expiry(settings: SettingsDep) -> timedelta:
    return timedelta(seconds=settings.lock_expiry_seconds)


def _role(db: Session, user: User, project_id: int) -> Role:
    """The caller's role in the project (the route's dependency already admitted them as a member)."""
    role = project_role(db, user, project_id)
    assert role is not None
    return role


@router.post("/api/projects/{project_id}/claim", responses={204: {"description": "no unfinished image is free"}})
def claim_next(project: ProjectForMember, db: SessionDep, user: CurrentUser, settings: SettingsDep) -> Response:
    try:
        image = service.claim_next_image(db, project, user, _expiry(settings))
    except service.ProjectArchived as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    if image is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return Response(ImageOut.model_validate(image).model_dump_json(), media_type="application/json")


@router.post("/api/images/{image_id}/claim")
def claim_image(image: ImageForMember, db: SessionDep, user: CurrentUser, settings: SettingsDep) -> ImageOut:
    try:
        return ImageOut.model_validate(
            service.claim_image(db, image, user, _role(db, user, image.project_id), _expiry(settings))
        )
    except (service.LockHeld, service.ProjectArchived) as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc


@router.post("/api/images/{image_id}/release")
def release_image(image: ImageForMember, db: SessionDep, user: CurrentUser) -> ImageOut:
    return ImageOut.model_validate(service.release_image(db, image, user))


@router.post("/api/images/{image_id}/done")
def finish_image(image: ImageForMember, db: SessionDep, user: CurrentUser) -> ImageOut:
    project = db.get(Project, image.project_id)
    assert project is not None
    try:
        return ImageOut.model_validate(service.finish_image(db, image, project, user))
    except (service.LockHeld, service.ProjectArchived) as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc


@router.get("/api/images/{image_id}/masks")
def list_masks(image: ImageForMember, db: SessionDep) -> list[MaskOut]:
    return [MaskOut.model_validate(m) for m in service.list_masks(db, image)]


@router.post(
    "/api/images/{image_id}/masks",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "a mask with this client_id exists already; it is returned unchanged"}},
)
def save_mask(
    body: MaskCreate,
    image: ImageForMember,
    db: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    response: Response,
) -> MaskOut:
    project = db.get(Project, image.project_id)
    assert project is not None
    try:
        mask, created = service.save_mask(
            db,
            image,
            project,
            user,
            _role(db, user, image.project_id),
            client_id=body.client_id,
            rle=body.rle.model_dump(),
            prompts=body.prompts.model_dump(mode="json", exclude_unset=True) if body.prompts else None,
            seconds_spent=body.seconds_spent,
            clicks=body.clicks,
            expiry=_expiry(settings),
            replaces_mask_id=body.replaces_mask_id,
        )
    except InvalidRle as exc:
        raise HTTPException(status_code=422, detail=f"invalid mask RLE: {exc}") from exc
    except (service.NotClaimed, service.SaveConflict, service.ProjectArchived) as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    except service.BadReplacement as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return MaskOut.model_validate(mask)


@router.delete("/api/masks/{mask_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_mask(mask: MaskForMember, db: SessionDep, user: CurrentUser, settings: SettingsDep) -> None:
    try:
        service.delete_mask(db, mask, user, _role(db, user, mask.project_id), _expiry(settings))
    except service.NotYours as exc:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=str(exc)) from exc
    except (service.NotClaimed, service.ProjectArchived) as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc
