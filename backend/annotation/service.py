"""Who annotates which image, and the masks they save. Plain functions over a Session, called by the
router and directly by tests.

Locks: `images.assignee_id` + `images.locked_until`. Taking a lock is ONE conditional UPDATE
(`... WHERE id = :id AND (locked_until IS NULL OR locked_until < now OR assignee_id = :me)`); the
database decides the race: PostgreSQL re-checks the WHERE on the row after waiting for a concurrent
writer's row lock (READ COMMITTED), SQLite runs writers one at a time. So two annotators never hold
the same image, and a lock nobody refreshed for `lock_expiry_seconds` is free again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.annotation.rle import check_rle
from backend.models import Image, ImageStatus, Mask, MaskSource, PrefillOutcome, Project, Stage, User

UNFINISHED = (ImageStatus.new, ImageStatus.in_progress)
# Candidates examined per claim attempt: losing a race on one image just moves on to the next.
CLAIM_BATCH = 20


class LockHeld(RuntimeError):
    """Another user holds a live lock on the image."""


class ClientIdConflict(RuntimeError):
    """The client id was already used for a mask of another image."""


class BadReplacement(ValueError):
    """`replaces_mask_id` names no mask of the image."""


def _now() -> datetime:
    return datetime.now(UTC)


def _lock(db: Session, image_id: int, user: User, expiry: timedelta, *, only_unfinished: bool) -> bool:
    """Atomically lock one image for `user` if it is free, expired or already theirs; True if taken."""
    now = _now()
    condition = [
        Image.id == image_id,
        or_(Image.locked_until.is_(None), Image.locked_until < now, Image.assignee_id == user.id),
    ]
    if only_unfinished:
        condition.append(Image.status.in_(UNFINISHED))
    result = db.execute(
        update(Image)
        .where(*condition)
        .values(assignee_id=user.id, locked_until=now + expiry)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _mark_in_progress(db: Session, image_id: int) -> None:
    db.execute(
        update(Image)
        .where(Image.id == image_id, Image.status == ImageStatus.new)
        .values(status=ImageStatus.in_progress)
        .execution_options(synchronize_session=False)
    )


def claim_next_image(db: Session, project: Project, user: User, expiry: timedelta) -> Image | None:
    """Lock the next unfinished image of the project's current stage for `user`, or None if none is free.

    The user's own live lock comes first (a reload resumes the same image), then images in upload order.
    """
    if project.stage == Stage.done:
        return None
    while True:
        now = _now()
        candidates = db.scalars(
            select(Image.id)
            .where(
                Image.project_id == project.id,
                Image.status.in_(UNFINISHED),
                or_(Image.locked_until.is_(None), Image.locked_until < now, Image.assignee_id == user.id),
            )
            .order_by(case((Image.assignee_id == user.id, 0), else_=1), Image.id)
            .limit(CLAIM_BATCH)
        ).all()
        if not candidates:
            return None
        for image_id in candidates:
            if _lock(db, image_id, user, expiry, only_unfinished=True):
                _mark_in_progress(db, image_id)
                db.commit()
                return _fresh(db, image_id)
        db.commit()  # every candidate went to someone else meanwhile: look again


def claim_image(db: Session, image: Image, user: User, expiry: timedelta) -> Image:
    """Lock (or keep locked) one given image for `user`; raises `LockHeld` if someone else holds it."""
    if not _lock(db, image.id, user, expiry, only_unfinished=False):
        db.rollback()
        current = _fresh(db, image.id)
        until = current.locked_until.isoformat(timespec="seconds") if current.locked_until else "?"
        raise LockHeld(f"image {image.id} is being annotated by another user (locked until {until})")
    _mark_in_progress(db, image.id)
    db.commit()
    return _fresh(db, image.id)


def release_image(db: Session, image: Image, user: User) -> Image:
    """Give the lock back (only the holder's lock; releasing a free image is a no-op)."""
    db.execute(
        update(Image)
        .where(Image.id == image.id, Image.assignee_id == user.id)
        .values(locked_until=None)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    return _fresh(db, image.id)


def finish_image(db: Session, image: Image, project: Project, user: User) -> Image:
    """Mark the image done for the project's current stage; needs the caller's lock unless free."""
    now = _now()
    result = db.execute(
        update(Image)
        .where(
            Image.id == image.id,
            or_(Image.locked_until.is_(None), Image.locked_until < now, Image.assignee_id == user.id),
        )
        .values(status=ImageStatus.done, assignee_id=user.id, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.rollback()
        raise LockHeld(f"image {image.id} is being annotated by another user")
    fresh = _fresh(db, image.id)
    fresh.stage_done = {**(fresh.stage_done or {}), project.stage.value: now.isoformat()}
    # Pre-filled masks the annotator neither corrected nor deleted were accepted as they are.
    db.execute(
        update(Mask)
        .where(Mask.image_id == image.id, Mask.source == MaskSource.detector, Mask.prefill_outcome.is_(None),
               Mask.deleted_at.is_(None))
        .values(prefill_outcome=PrefillOutcome.kept)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    return fresh


def _fresh(db: Session, image_id: int) -> Image:
    image = db.get(Image, image_id, populate_existing=True)
    assert image is not None
    return image


def _refresh_lock(db: Session, image: Image, user: User, expiry: timedelta) -> None:
    """Saving a mask is activity: the saver's own lock is extended (nobody else's is touched)."""
    db.execute(
        update(Image)
        .where(Image.id == image.id, Image.assignee_id == user.id, Image.locked_until.is_not(None))
        .values(locked_until=_now() + expiry)
        .execution_options(synchronize_session=False)
    )


def save_mask(
    db: Session,
    image: Image,
    project: Project,
    user: User,
    *,
    client_id: str,
    rle: dict[str, Any],
    prompts: dict[str, Any] | None,
    seconds_spent: float | None,
    clicks: int | None,
    expiry: timedelta,
    replaces_mask_id: int | None = None,
) -> tuple[Mask, bool]:
    """Store a manual mask; returns (mask, created). Idempotent by `client_id`: a repeat returns the
    stored mask unchanged with created=False. Raises `InvalidRle` (bad mask), `ClientIdConflict` or
    `BadReplacement`.

    With `replaces_mask_id` the new mask corrects that mask of the image: in the same transaction the
    old one is hidden (soft-deleted), becomes the new mask's parent, and if it was pre-filled
    (detector/auto) its ``prefill_outcome`` is ``corrected``. The new mask stays source manual."""
    existing = _by_client_id(db, client_id)
    if existing is not None:
        return _same_image(existing, image), False
    checked = check_rle(rle, image.height, image.width)
    replaced = None
    if replaces_mask_id is not None:
        replaced = db.get(Mask, replaces_mask_id)
        if replaced is None or replaced.image_id != image.id:
            raise BadReplacement(f"replaces_mask_id {replaces_mask_id} is not a mask of image {image.id}")
    mask = Mask(
        client_id=client_id,
        image_id=image.id,
        project_id=image.project_id,
        rle=checked.rle,
        bbox=checked.bbox,
        area=checked.area,
        source=MaskSource.manual,
        stage=project.stage,
        prompts=prompts,
        seconds_spent=seconds_spent,
        clicks=clicks,
        author_id=user.id,
        parent_mask_id=replaced.id if replaced is not None else None,
    )
    db.add(mask)
    if replaced is not None and replaced.deleted_at is None:
        replaced.deleted_at = _now()
        if replaced.source != MaskSource.manual:
            replaced.prefill_outcome = PrefillOutcome.corrected
    _refresh_lock(db, image, user, expiry)
    try:
        db.commit()
    except IntegrityError:
        # A concurrent retry with the same client id won the insert: answer with its row.
        db.rollback()
        existing = _by_client_id(db, client_id)
        if existing is None:
            raise
        return _same_image(existing, image), False
    return mask, True


def _by_client_id(db: Session, client_id: str) -> Mask | None:
    return db.scalar(select(Mask).where(Mask.client_id == client_id))


def _same_image(mask: Mask, image: Image) -> Mask:
    if mask.image_id != image.id:
        raise ClientIdConflict(f"client_id {mask.client_id!r} was already used for a mask of another image")
    return mask


def list_masks(db: Session, image: Image) -> list[Mask]:
    """The image's masks that are not deleted, oldest first."""
    return list(db.scalars(select(Mask).where(Mask.image_id == image.id, Mask.deleted_at.is_(None)).order_by(Mask.id)))


def delete_mask(db: Session, mask: Mask) -> None:
    """Soft delete: the row stays (training data lineage, review statistics); a pre-filled mask
    records that the annotator threw it away. Deleting twice is a no-op."""
    if mask.deleted_at is not None:
        return
    mask.deleted_at = _now()
    if mask.source != MaskSource.manual:
        mask.prefill_outcome = PrefillOutcome.deleted
    db.commit()
