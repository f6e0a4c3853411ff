"""Who annotates which image, and the masks they save. Plain functions over a Session, called by the
router and directly by tests.

Locks: `images.assignee_id` + `images.locked_until`. Taking a lock is ONE conditional UPDATE
(`... WHERE id = :id AND (locked_until IS NULL OR locked_until < now OR assignee_id = :me)`); the
database decides the race: PostgreSQL re-checks the WHERE on the row after waiting for a concurrent
writer's row lock (READ COMMITTED), SQLite runs writers one at a time. So two annotators never hold
the same image, and a lock nobody refreshed for `lock_expiry_seconds` is free again.

Masks: saving one needs the caller's live claim on the image, and deleting one needs it too; a
manager or admin of the project needs no claim. Only the author, a manager or an admin may delete a
manual mask; pre-filled masks (detector, auto: no author) are the claim holder's to throw away. The
claim check is the same kind of conditional UPDATE (it also extends the claim), so it cannot pass
for a claim that another annotator takes over meanwhile.

Assignment: `images.assigned_to` reserves an image for one member. `claim next` offers a user their own
claim first, then the images assigned to them, then unassigned ones, and never an image assigned to
someone else; claiming such an image directly is refused (`AssignedToOther`) unless the caller works
claim-free (manager, admin). The condition is part of the locking UPDATE, so a concurrent assignment
cannot slip between the check and the lock.

Archive: an archived project takes no claims, mask saves, mask deletes or `done` (`ProjectArchived`);
everything else (reading, releasing a claim, exports) works as before.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Update, case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.masks import provenance
from backend.masks.coverage import refresh_coverage
from backend.masks.rle import check_rle
from backend.masks.writer import NewMask, add_mask
from backend.selection.service import next_order, with_scores
from backend.tables import Image, ImageStatus, Mask, MaskSource, PrefillOutcome, Project, Role, Stage, User
from backend.webhooks.events import emit

UNFINISHED = (ImageStatus.new, ImageStatus.in_progress)
# Candidates examined per claim attempt: losing a race on one image just moves on to the next.
CLAIM_BATCH = 20


class LockHeld(RuntimeError):
    """Another user holds a live lock on the image."""


class AssignedToOther(LockHeld):
    """The image is assigned to another user (the message names them)."""


class ProjectArchived(RuntimeError):
    """The project is archived: no claims and no changes to its masks."""


class NotClaimed(RuntimeError):
    """The caller needs a live claim on the image and holds none (the message says who does)."""


class NotYours(PermissionError):
    """Only the author, a manager or an admin may delete a manual mask."""


class SaveConflict(RuntimeError):
    """The mask could not be stored: the image or the mask it replaces went away meanwhile."""


class BadReplacement(ValueError):
    """`replaces_mask_id` names no mask of the image."""


def _updated(db: Session, statement: Update) -> int:
    """Run an UPDATE; how many rows it changed (its result is a CursorResult, which has the count)."""
    return cast(CursorResult[Any], db.execute(statement)).rowcount


def _now() -> datetime:
    return datetime.now(UTC)


def _refuse_archived(project: Project) -> None:
    if project.archived_at is not None:
        raise ProjectArchived(f"project {project.id} is archived: restore it to annotate (PATCH archived false)")


def _not_assigned_to_others(user: User) -> ColumnElement[bool]:
    return or_(Image.assigned_to.is_(None), Image.assigned_to == user.id)


def _lock(
    db: Session, image_id: int, user: User, expiry: timedelta, *, only_unfinished: bool, any_assignment: bool = False
) -> bool:
    """Atomically lock one image for `user` if it is free, expired or already theirs, and (unless
    `any_assignment`) not assigned to someone else; True if taken."""
    now = _now()
    condition = [
        Image.id == image_id,
        or_(Image.locked_until.is_(None), Image.locked_until < now, Image.assignee_id == user.id),
    ]
    if only_unfinished:
        condition.append(Image.status.in_(UNFINISHED))
    if not any_assignment:
        condition.append(_not_assigned_to_others(user))
    changed = _updated(
        db,
        update(Image)
        .where(*condition)
        .values(assignee_id=user.id, locked_until=now + expiry)
        .execution_options(synchronize_session=False),
    )
    return changed == 1


def _mark_in_progress(db: Session, image_id: int) -> None:
    db.execute(
        update(Image)
        .where(Image.id == image_id, Image.status == ImageStatus.new)
        .values(status=ImageStatus.in_progress)
        .execution_options(synchronize_session=False)
    )


def claim_next_image(db: Session, project: Project, user: User, expiry: timedelta) -> Image | None:
    """Lock the next unfinished image of the project's current stage for `user`, or None if none is free.

    The user's own live lock comes first (a reload resumes the same image), then the images assigned
    to them, then unassigned ones, each in the order of the project's selection strategy
    (`backend.selection.service.next_order`: upload order unless set); images assigned to others never.
    """
    _refuse_archived(project)
    if project.stage == Stage.done:
        return None
    while True:
        now = _now()
        candidates = db.scalars(
            with_scores(select(Image.id))
            .where(
                Image.project_id == project.id,
                Image.status.in_(UNFINISHED),
                or_(Image.locked_until.is_(None), Image.locked_until < now, Image.assignee_id == user.id),
                _not_assigned_to_others(user),
            )
            .order_by(
                case((Image.assignee_id == user.id, 0), (Image.assigned_to == user.id, 1), else_=2),
                *next_order(project),
            )
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


def claim_image(db: Session, image: Image, user: User, role: Role, expiry: timedelta) -> Image:
    """Lock (or keep locked) one given image for `user` (`role`: theirs in the project); raises
    `ProjectArchived`, `AssignedToOther` (a manager may claim it anyway) or `LockHeld` (someone else
    holds it)."""
    project = db.get(Project, image.project_id)
    assert project is not None
    _refuse_archived(project)
    if not _lock(db, image.id, user, expiry, only_unfinished=False, any_assignment=role in CLAIM_FREE_ROLES):
        db.rollback()
        current = _fresh(db, image.id)
        if current.assigned_to not in (None, user.id) and role not in CLAIM_FREE_ROLES:
            assignee = db.get(User, current.assigned_to)
            name = assignee.username if assignee is not None else "another user"
            raise AssignedToOther(
                f"image {image.id} is assigned to {name}: only they or a manager of the project may claim it"
            )
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
    _refuse_archived(project)
    now = _now()
    changed = _updated(
        db,
        update(Image)
        .where(
            Image.id == image.id,
            or_(Image.locked_until.is_(None), Image.locked_until < now, Image.assignee_id == user.id),
        )
        .values(status=ImageStatus.done, assignee_id=user.id, locked_until=None)
        .execution_options(synchronize_session=False),
    )
    if changed != 1:
        db.rollback()
        raise LockHeld(f"image {image.id} is being annotated by another user")
    fresh = _fresh(db, image.id)
    fresh.stage_done = {**(fresh.stage_done or {}), project.stage.value: now.isoformat()}
    # Pre-filled masks the annotator neither corrected nor deleted were accepted as they are.
    db.execute(
        update(Mask)
        .where(
            Mask.image_id == image.id,
            Mask.source == MaskSource.detector,
            Mask.prefill_outcome.is_(None),
            Mask.deleted_at.is_(None),
        )
        .values(prefill_outcome=PrefillOutcome.kept)
        .execution_options(synchronize_session=False)
    )
    emit(db, project.id, "image.done", {"image_id": image.id, "stage": project.stage.value, "user_id": user.id})
    db.commit()
    return fresh


def _fresh(db: Session, image_id: int) -> Image:
    image = db.get(Image, image_id, populate_existing=True)
    assert image is not None
    return image


# Roles that work on an image without claiming it (fixing, cleaning up after others).
CLAIM_FREE_ROLES = (Role.manager, Role.admin)


def _hold(db: Session, image: Image, user: User, expiry: timedelta) -> bool:
    """Extend the caller's live claim on the image; False if they hold none. Saving is activity.

    One conditional UPDATE, like `_lock`: on PostgreSQL the image row stays locked until the commit, so
    the claim cannot pass to someone else between this check and the write; SQLite runs writers one at
    a time."""
    now = _now()
    changed = _updated(
        db,
        update(Image)
        .where(Image.id == image.id, Image.assignee_id == user.id, Image.locked_until >= now)
        .values(locked_until=now + expiry)
        .execution_options(synchronize_session=False),
    )
    return changed == 1


def _require_claim(db: Session, image: Image, user: User, role: Role, expiry: timedelta, action: str) -> None:
    """Raise `NotClaimed` unless the caller holds the image's claim (or works claim-free as a manager)."""
    if _hold(db, image, user, expiry) or role in CLAIM_FREE_ROLES:
        return
    db.rollback()
    current = _fresh(db, image.id)
    if current.assignee_id is not None and current.locked_until is not None and current.locked_until >= _now():
        holder = db.get(User, current.assignee_id)
        name = holder.username if holder is not None else "another user"
        until = current.locked_until.isoformat(timespec="seconds")
        raise NotClaimed(f"image {image.id} is claimed by {name} (until {until}): {action} needs the claim")
    raise NotClaimed(
        f"claim image {image.id} first (POST /api/images/{image.id}/claim): {action} needs your live claim on it"
    )


def save_mask(
    db: Session,
    image: Image,
    project: Project,
    user: User,
    role: Role,
    *,
    client_id: str,
    rle: dict[str, Any],
    prompts: dict[str, Any] | None,
    seconds_spent: float | None,
    clicks: int | None,
    expiry: timedelta,
    replaces_mask_id: int | None = None,
) -> tuple[Mask, bool]:
    """Store a manual mask; returns (mask, created). `role` is the caller's role in the project.

    Idempotent by (image, `client_id`): a repeat returns the stored mask unchanged with created=False,
    whoever holds the claim by then (the first save succeeded; a retry must not turn it into an error).
    Raises `InvalidRle` (bad mask), `BadReplacement`, `NotClaimed`, `ProjectArchived` or `SaveConflict`.

    With `replaces_mask_id` the new mask corrects that mask of the image: in the same transaction the
    old one is hidden (soft-deleted), becomes the new mask's parent, and if it was pre-filled
    (detector/auto) its ``prefill_outcome`` is ``corrected``. The new mask stays source manual."""
    existing = _by_client_id(db, image, client_id)
    if existing is not None:
        return existing, False
    _refuse_archived(project)
    checked = check_rle(rle, image.height, image.width)
    if replaces_mask_id is not None:
        replaced = db.get(Mask, replaces_mask_id)
        if replaced is None or replaced.image_id != image.id:
            raise BadReplacement(f"replaces_mask_id {replaces_mask_id} is not a mask of image {image.id}")
    new = NewMask(
        mask=checked,
        source=MaskSource.manual,
        stage=project.stage,
        provenance=provenance.annotated(prompts),
        client_id=client_id,
        author_id=user.id,
        parent_mask_id=replaces_mask_id,
        seconds_spent=seconds_spent,
        clicks=clicks,
    )
    # Every statement that writes is inside this block, so the unique (image_id, client_id) violation
    # of a concurrent twin is caught wherever it surfaces (an autoflush, the flush, the commit).
    try:
        _require_claim(db, image, user, role, expiry, "saving a mask")
        mask = add_mask(db, image, new)
        if replaces_mask_id is not None:
            _hide_replaced(db, replaces_mask_id)
        db.commit()
    except IntegrityError as error:
        # The twin's transaction committed first (PostgreSQL makes the insert wait for it; SQLite
        # runs one writer at a time), so its row is visible now: answer as the first request did.
        db.rollback()
        existing = _by_client_id(db, image, client_id)
        if existing is None:
            raise SaveConflict(f"the mask could not be stored, the image changed meanwhile: {error.orig}") from None
        return existing, False
    return mask, True


def _hide_replaced(db: Session, mask_id: int) -> None:
    replaced = db.get(Mask, mask_id, populate_existing=True)
    assert replaced is not None
    if replaced.deleted_at is None:
        replaced.deleted_at = _now()
        if replaced.source != MaskSource.manual:
            replaced.prefill_outcome = PrefillOutcome.corrected
    db.flush()
    refresh_coverage(db, replaced.image_id)


def _by_client_id(db: Session, image: Image, client_id: str) -> Mask | None:
    return db.scalar(select(Mask).where(Mask.image_id == image.id, Mask.client_id == client_id))


def list_masks(db: Session, image: Image) -> list[Mask]:
    """The image's masks that are not deleted, oldest first."""
    return list(db.scalars(select(Mask).where(Mask.image_id == image.id, Mask.deleted_at.is_(None)).order_by(Mask.id)))


def delete_mask(db: Session, mask: Mask, user: User, role: Role, expiry: timedelta) -> None:
    """Soft delete: the row stays (training data lineage, review statistics); a pre-filled mask
    records that the annotator threw it away. Deleting twice is a no-op.

    Raises `ProjectArchived`, `NotYours` (someone else's manual mask, for a non-manager) or `NotClaimed`."""
    project = db.get(Project, mask.project_id)
    assert project is not None
    _refuse_archived(project)
    if role not in CLAIM_FREE_ROLES:
        if mask.source == MaskSource.manual and mask.author_id != user.id:
            raise NotYours(f"mask {mask.id} is another annotator's: only a manager of the project may delete it")
        image = db.get(Image, mask.image_id)
        assert image is not None
        _require_claim(db, image, user, role, expiry, "deleting a mask")
    if mask.deleted_at is not None:
        db.commit()
        return
    mask.deleted_at = _now()
    if mask.source != MaskSource.manual:
        mask.prefill_outcome = PrefillOutcome.deleted
    db.flush()
    refresh_coverage(db, mask.image_id)
    db.commit()
