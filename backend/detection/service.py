"""The detector's data and its pre-filled masks, as plain functions over a Session.

Training data: the boxes of a project's accepted masks, i.e. live masks drawn by hand (source
``manual``, any stage) and pre-filled masks an annotator kept (``prefill_outcome = kept``); masks a
reviewer rejected, unreviewed automatic masks and pre-filled masks still pending are left out. The
split is by image (all boxes of an image on one side), the seeded hash split of `backend.masks.split`
that SAM rounds use too, so a version is reproducible and its held-out figures never see a training
image.

Pre-filled masks (`store_proposals`): an image's detector masks are inserted in ONE transaction with
its `DetectorProposal` row. The row's unique image id makes proposals idempotent: a rerun, a
requeued job or a second job skips an image already proposed, and a worker killed mid-image leaves
nothing of it behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.masks import provenance
from backend.masks.duplicates import without_duplicates
from backend.masks.rle import EmptyMask, checked_mask
from backend.masks.writer import NewMask, insert_masks
from backend.tables import (
    DetectorProposal,
    DetectorVersion,
    Image,
    Mask,
    MaskSource,
    ModelStatus,
    PrefillOutcome,
    ReviewStatus,
    Stage,
)

STAGE = Stage.semi_automatic
MIN_TRAIN_IMAGES = 2  # the detector keeps one of its training images out to calibrate its scores
MIN_IMAGES = MIN_TRAIN_IMAGES + 1  # and one is held out to measure it


class NotEnoughData(ValueError):
    """Too few annotated masks or images to train a detector (the message gives the counts)."""


def training_boxes(db: Session, project_id: int) -> dict[int, list[list[float]]]:
    """image id -> boxes [x0, y0, x1, y1] (original frame, pixel edges) of the project's accepted masks."""
    rows = db.execute(
        select(Mask.image_id, Mask.bbox)
        .where(
            Mask.project_id == project_id,
            Mask.deleted_at.is_(None),
            Mask.review_status != ReviewStatus.rejected,
            or_(Mask.source == MaskSource.manual, Mask.prefill_outcome == PrefillOutcome.kept),
        )
        .order_by(Mask.image_id, Mask.id)
    ).all()
    boxes: dict[int, list[list[float]]] = {}
    for image_id, (x, y, w, h) in rows:
        if w > 0 and h > 0:
            boxes.setdefault(image_id, []).append([float(x), float(y), float(x + w), float(y + h)])
    return boxes


def check_enough(boxes: Mapping[int, Sequence[Any]], min_boxes: int) -> None:
    """Raises `NotEnoughData` naming the counts unless there are `min_boxes` boxes on `MIN_IMAGES` images."""
    n_boxes, n_images = sum(len(b) for b in boxes.values()), len(boxes)
    if n_boxes == 0:
        raise NotEnoughData(
            "no annotated masks to train a detector on (0 masks on 0 images): annotate some images in the "
            f"assisted-manual stage first (at least {min_boxes} masks on {MIN_IMAGES} images)"
        )
    if n_boxes < min_boxes or n_images < MIN_IMAGES:
        raise NotEnoughData(
            f"too few annotated masks to train a detector: {n_boxes} masks on {n_images} images, "
            f"at least {min_boxes} masks on {MIN_IMAGES} images needed"
        )


def latest_ready(db: Session, project_id: int) -> DetectorVersion | None:
    return db.scalar(
        select(DetectorVersion)
        .where(
            DetectorVersion.project_id == project_id,
            DetectorVersion.status == ModelStatus.ready,
        )
        .order_by(DetectorVersion.id.desc())
    )


def list_versions(db: Session, project_id: int) -> list[DetectorVersion]:
    return list(
        db.scalars(
            select(DetectorVersion).where(DetectorVersion.project_id == project_id).order_by(DetectorVersion.id.desc())
        )
    )


def images_to_propose(db: Session, project_id: int) -> tuple[int, list[int]]:
    """(number of the project's images, ids of those neither proposed nor done in stage 2, id order)."""
    proposed = select(DetectorProposal.image_id).where(DetectorProposal.project_id == project_id)
    rows = db.execute(
        select(Image.id, Image.stage_done)
        .where(Image.project_id == project_id, Image.id.not_in(proposed))
        .order_by(Image.id)
    ).all()
    total = db.scalar(select(func.count()).select_from(Image).where(Image.project_id == project_id)) or 0
    return int(total), [image_id for image_id, done in rows if STAGE.value not in (done or {})]


def is_locked(image: Image) -> bool:
    """An annotator holds a live lock on the image (pre-filling under their hands would confuse them)."""
    return image.locked_until is not None and image.locked_until > datetime.now(UTC)


@dataclass(frozen=True)
class Stored:
    masks: int
    already_proposed: bool
    duplicates: int  # matching a mask already on the image (`backend.masks.duplicates`)


def store_proposals(
    db: Session,
    image: Image,
    detector: DetectorVersion,
    n_boxes: int,
    records: Sequence[Mapping[str, Any]],
) -> Stored:
    """Insert `image`'s pre-filled masks and its proposal row in one transaction (committed here).

    `records` are `model_server.detector.proposals.propose_masks` records (segmentation, box, score,
    predicted_iou). Masks are stored (one INSERT, `backend.masks.writer.insert_masks`) with source
    ``detector``, stage semi_automatic, no author, ``prefill_outcome`` NULL (pending: the annotator
    keeps, corrects or deletes them) and the detector's box, score and version, and the SAM version,
    in their provenance. Empty masks are skipped, and so are masks matching one already on the image
    (an annotator drew the object: `backend.masks.duplicates`). If the image was proposed meanwhile,
    nothing is stored.
    """
    db.refresh(image, with_for_update=True)  # PostgreSQL: serialise with a concurrent run of the same image
    if db.scalar(select(DetectorProposal.id).where(DetectorProposal.image_id == image.id)) is not None:
        db.rollback()
        return Stored(0, True, 0)
    masks: list[NewMask] = []
    for record in records:
        try:
            checked = checked_mask(record["segmentation"], image.height, image.width)
        except EmptyMask:
            continue
        masks.append(
            NewMask(
                mask=checked,
                source=MaskSource.detector,
                stage=STAGE,
                provenance=provenance.detector(
                    detector.id, detector.model_version_id, record["box"], float(record["score"])
                ),
                predicted_iou=float(record["predicted_iou"]),
            )
        )
    novel = without_duplicates(db, image, masks)
    stored = insert_masks(db, image, novel.masks)
    db.add(
        DetectorProposal(
            image_id=image.id,
            project_id=image.project_id,
            detector_version_id=detector.id,
            boxes=int(n_boxes),
            masks=stored,
        )
    )
    try:
        db.commit()
    except IntegrityError:  # another run proposed this image first
        db.rollback()
        return Stored(0, True, 0)
    return Stored(stored, False, novel.skipped)
