"""Review endpoints: any member of the project may review its sampled auto masks.

- ``GET /api/projects/{id}/review/next?after=<mask id>`` → `ReviewItem` (the oldest pending mask, above
  ``after`` to skip one), 204 when none. Two reviewers asking at once get the same mask; the second
  to decide gets 409 and asks again (masks are not locked to a reviewer);
- ``POST /api/masks/{id}/review`` `ReviewIn` → `ReviewOut` (201); 409 if the mask is not pending
  (already reviewed, never sampled, deleted), 422 for a fix whose RLE is not a mask of the image;
- ``GET /api/projects/{id}/review/summary`` → `ReviewSummaryOut`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from backend.annotation.schemas import MaskOut
from backend.api.deps import CurrentUser, MaskForMember, ProjectForMember, SessionDep
from backend.api.types import MAX_DB_ID
from backend.images.schemas import ImageOut
from backend.masks.rle import InvalidRle
from backend.review import service
from backend.review.schemas import ReviewIn, ReviewItem, ReviewOut, ReviewSummaryOut
from backend.tables import Image, Mask, ReviewDecision

router = APIRouter(tags=["review"])


@router.get("/api/projects/{project_id}/review/next", responses={204: {"description": "nothing pending"}})
def next_for_review(
    project: ProjectForMember, db: SessionDep, after: Annotated[int, Query(ge=0, le=MAX_DB_ID)] = 0
) -> Response:
    found = service.next_pending(db, project.id, after)
    if found is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    mask, pending = found
    item = ReviewItem(
        mask=MaskOut.model_validate(mask), image=ImageOut.model_validate(db.get(Image, mask.image_id)), pending=pending
    )
    return Response(item.model_dump_json(), media_type="application/json")


@router.post("/api/masks/{mask_id}/review", status_code=status.HTTP_201_CREATED)
def review_mask(mask: MaskForMember, body: ReviewIn, db: SessionDep, user: CurrentUser) -> ReviewOut:
    try:
        row = service.review(
            db,
            mask,
            user,
            ReviewDecision(body.decision),
            body.rle.model_dump() if body.rle else None,
            body.seconds_spent,
        )
    except InvalidRle as error:
        raise HTTPException(status_code=422, detail=f"invalid corrected mask RLE: {error}") from None
    except service.NotReviewable as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    fixed = db.get(Mask, row.fixed_mask_id) if row.fixed_mask_id else None
    return ReviewOut(
        id=row.id,
        mask_id=row.mask_id,
        decision=row.decision,
        iou=row.iou,
        fixed_mask=MaskOut.model_validate(fixed) if fixed else None,
        reviewer_id=row.reviewer_id,
        created_at=row.created_at,
    )


@router.get("/api/projects/{project_id}/review/summary")
def review_summary(project: ProjectForMember, db: SessionDep) -> ReviewSummaryOut:
    return ReviewSummaryOut.model_validate(service.summary(db, project.id), from_attributes=True)
