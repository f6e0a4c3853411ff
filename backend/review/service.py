"""The review queue of sampled auto masks and what reviewers decide.

Auto masks enter the queue when they are stored (`backend.auto.service`, ``review_status=pending``).
A reviewer takes the oldest pending mask and decides:

- **accept**: the mask is kept as it is (IoU after review 1.0);
- **fix**: the reviewer's corrected mask is stored as a new manual mask (``parent_mask_id`` = the auto
  mask) that replaces it in the dataset (the auto mask is soft-deleted, its row and review stay),
  and IoU(auto, corrected) is recorded;
- **reject**: the mask is wrong beyond repair and leaves the dataset (soft-deleted); it counts as a
  review below any IoU threshold.

A mask is reviewed once: the decision is a conditional UPDATE from pending, so of two reviewers
racing on one mask the second gets `AlreadyReviewed`.

`summary` reports the paper's check (SAM §4: 94% of sampled masks had IoU > 0.9 with their
professionally corrected version): the share of reviewed masks whose IoU after review is above
`IOU_THRESHOLD`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from backend.masks import provenance
from backend.masks.coverage import refresh_coverage
from backend.masks.rle import check_rle, mask_iou
from backend.masks.writer import NewMask, add_mask
from backend.tables import (
    Image,
    Mask,
    MaskReview,
    MaskSource,
    PrefillOutcome,
    ReviewDecision,
    ReviewStatus,
    Stage,
    User,
)
from backend.webhooks.events import emit

IOU_THRESHOLD = 0.9

_OUTCOME = {
    ReviewDecision.accept: (ReviewStatus.accepted, PrefillOutcome.kept),
    ReviewDecision.fix: (ReviewStatus.fixed, PrefillOutcome.corrected),
    ReviewDecision.reject: (ReviewStatus.rejected, PrefillOutcome.deleted),
}


class NotReviewable(RuntimeError):
    """The mask is not (or no longer) in the review queue."""


def _pending(project_id: int):
    return (Mask.project_id == project_id) & (Mask.review_status == ReviewStatus.pending) & Mask.deleted_at.is_(None)


def next_pending(db: Session, project_id: int, after: int = 0) -> tuple[Mask, int] | None:
    """The oldest pending mask of the project with an id above `after` (a reviewer skipping masks
    passes the last id they saw), and how many are pending in all; None when there is none."""
    mask = db.scalar(select(Mask).where(_pending(project_id), Mask.id > after).order_by(Mask.id).limit(1))
    if mask is None:
        return None
    return mask, db.scalar(select(func.count()).select_from(Mask).where(_pending(project_id))) or 0


def review(
    db: Session,
    mask: Mask,
    reviewer: User,
    decision: ReviewDecision,
    rle: dict[str, Any] | None = None,
    seconds_spent: float | None = None,
) -> MaskReview:
    """Record `reviewer`'s `decision` on the pending `mask` (committed); `rle` is the fix.

    Raises:
        NotReviewable: the mask is not pending (never sampled, reviewed already, or deleted).
        InvalidRle: the fix is not a mask of the image.
    """
    status, outcome = _OUTCOME[decision]
    now = datetime.now(UTC)
    fixed: Mask | None = None
    iou: float | None = {ReviewDecision.accept: 1.0, ReviewDecision.reject: None}.get(decision)
    if decision == ReviewDecision.fix:
        if rle is None:
            raise ValueError("a fix needs the corrected mask (rle)")
        image = db.get_one(Image, mask.image_id)
        checked = check_rle(rle, image.height, image.width)
        iou = mask_iou(mask.rle, checked.rle)
    changes: dict[str, Any] = {"review_status": status, "prefill_outcome": outcome, "updated_at": now}
    if decision != ReviewDecision.accept:
        changes["deleted_at"] = now  # replaced by the fix, or thrown away
    taken = cast(  # an UPDATE's result is a CursorResult, which has the row count
        CursorResult[Any],
        db.execute(
            update(Mask)
            .where(Mask.id == mask.id, Mask.review_status == ReviewStatus.pending, Mask.deleted_at.is_(None))
            .values(**changes)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if taken != 1:
        db.rollback()
        db.refresh(mask)
        raise NotReviewable(
            f"mask {mask.id} is not in the review queue (review status {mask.review_status.value}"
            f"{', deleted' if mask.deleted_at else ''})"
        )
    if decision == ReviewDecision.reject:
        refresh_coverage(db, mask.image_id)  # a fix's writer call does it
    if decision == ReviewDecision.fix:
        fixed = add_mask(
            db,
            image,
            NewMask(
                mask=checked,
                source=MaskSource.manual,
                stage=Stage.fully_automatic,
                provenance=provenance.review_fix(mask.id),
                author_id=reviewer.id,
                parent_mask_id=mask.id,
                seconds_spent=seconds_spent,
            ),
        )
    row = MaskReview(
        mask_id=mask.id,
        project_id=mask.project_id,
        reviewer_id=reviewer.id,
        decision=decision,
        iou=iou,
        fixed_mask_id=fixed.id if fixed else None,
    )
    db.add(row)
    if decision == ReviewDecision.accept:
        emit(
            db,
            mask.project_id,
            "mask.accepted",
            {"mask_id": mask.id, "image_id": mask.image_id, "reviewer_id": reviewer.id},
        )
    db.commit()
    db.refresh(mask)
    return row


@dataclass(frozen=True)
class Summary:
    auto_masks: int
    sampled: int
    pending: int
    accepted: int
    fixed: int
    rejected: int
    reviewed: int
    iou_threshold: float
    above_threshold: int
    share_above_threshold: float | None  # None until something was reviewed
    mean_iou_fixed: float | None
    model_version_ids: list[int]  # the weights that produced the sampled masks (figures name them)


def summary(db: Session, project_id: int) -> Summary:
    """Counts of the queue and the share of reviewed masks with IoU after review above the threshold."""
    statuses = dict(
        db.execute(
            select(Mask.review_status, func.count())
            .where(Mask.project_id == project_id, Mask.source == MaskSource.auto)
            .group_by(Mask.review_status)
        ).all()
    )
    pending = db.scalar(select(func.count()).select_from(Mask).where(_pending(project_id))) or 0
    reviews = db.execute(select(MaskReview.decision, MaskReview.iou).where(MaskReview.project_id == project_id)).all()
    above = sum(1 for _, iou in reviews if iou is not None and iou > IOU_THRESHOLD)
    fixed_ious = [iou for decision, iou in reviews if decision == ReviewDecision.fix and iou is not None]
    count = {d: sum(1 for decision, _ in reviews if decision == d) for d in ReviewDecision}
    sampled = db.scalars(
        select(Mask.provenance).where(
            Mask.project_id == project_id, Mask.source == MaskSource.auto, Mask.review_status != ReviewStatus.none
        )
    )
    versions = sorted({p["model_version_id"] for p in sampled if p.get("model_version_id") is not None})
    return Summary(
        auto_masks=sum(statuses.values()),
        sampled=sum(n for s, n in statuses.items() if s != ReviewStatus.none),
        pending=pending,
        accepted=count[ReviewDecision.accept],
        fixed=count[ReviewDecision.fix],
        rejected=count[ReviewDecision.reject],
        reviewed=len(reviews),
        iou_threshold=IOU_THRESHOLD,
        above_threshold=above,
        share_above_threshold=above / len(reviews) if reviews else None,
        mean_iou_fixed=sum(fixed_ious) / len(fixed_ious) if fixed_ious else None,
        model_version_ids=versions,
    )
