"""Storing the automatic generator's masks: one image at a time, all or nothing.

An image's masks are inserted in ONE transaction together with marking the image done for the
fully automatic stage (``images.stage_done["fully_automatic"]``). A worker killed mid-image therefore
leaves that image with no auto masks and not done, and the next run (a requeued or new job) redoes
it; an image already done is skipped, so reruns add nothing.

Review sampling happens here too: each stored mask goes to the review queue
(``review_status = pending``) with probability ``review_fraction`` (project setting, see
`backend.projects.settings`), decided by a hash of (``review_seed``, image id, the mask's index in the
generator's output). The choice is reproducible and does not depend on the order images are
processed in or on how often the job was restarted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.masks import provenance
from backend.masks.duplicates import without_duplicates
from backend.masks.rle import EmptyMask, checked_mask
from backend.masks.writer import NewMask, insert_masks
from backend.projects.settings import project_settings
from backend.selection.service import next_order, with_scores
from backend.tables import Image, MaskSource, Project, ReviewStatus, Stage

STAGE = Stage.fully_automatic


@dataclass(frozen=True)
class ReviewSampling:
    """Which share of auto masks is reviewed, and the seed that picks them."""

    fraction: float
    seed: int

    @classmethod
    def of(cls, project: Project) -> ReviewSampling:
        """The project's sampling (settings ``review_fraction`` / ``review_seed``)."""
        settings = project_settings(project)
        return cls(settings.review_fraction, settings.review_seed)

    def picks(self, image_id: int, index: int) -> bool:
        """Whether mask number `index` of image `image_id` goes to review."""
        digest = hashlib.sha256(f"{self.seed}:{image_id}:{index}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.fraction


@dataclass(frozen=True)
class StoredImage:
    masks: int  # stored
    dropped_large: int  # covering >= max_mask_fraction of the image
    pending_review: int
    duplicates: int  # matching a mask already on the image (`backend.masks.duplicates`)


def is_done(image: Image) -> bool:
    return STAGE.value in (image.stage_done or {})


def images_to_do(db: Session, project_id: int) -> tuple[int, list[int]]:
    """(number of the project's images, ids of those not yet done for the stage, in the project's
    selection order: `backend.selection.service.next_order`, the order of claim next)."""
    project = db.get(Project, project_id)
    order = next_order(project) if project is not None else [Image.id]
    rows = db.execute(
        with_scores(select(Image.id, Image.stage_done)).where(Image.project_id == project_id).order_by(*order)
    ).all()
    return len(rows), [image_id for image_id, done in rows if STAGE.value not in (done or {})]


def _floats(values: Any) -> list[Any] | None:
    """Nested lists of numbers as plain floats (JSON columns), None stays None."""
    if values is None:
        return None
    return np.asarray(values, dtype=np.float64).tolist()


def store_image_masks(
    db: Session,
    image: Image,
    records: Sequence[Mapping[str, Any]],
    sampling: ReviewSampling,
    max_mask_fraction: float,
    run: Mapping[str, Any] | None = None,
) -> StoredImage:
    """Insert `image`'s auto masks and mark it done, in one transaction (committed here).

    `records` are the generator's coco_rle records (segmentation, predicted_iou, stability_score,
    point_coords, crop_box). The masks are stored by `backend.masks.writer.insert_masks` (one INSERT),
    with area and bbox recomputed from the canonical RLE as for every other mask: COCO's box has width
    x_max - x_min + 1, one more than the official generator reports. Empty masks are skipped, masks
    covering at least `max_mask_fraction` of the image are dropped, and masks matching one already on
    the image (an annotator's, a pre-filled one) are skipped (`backend.masks.duplicates`). `run` (the model version and
    job, e.g. ``{"model_version_id": 3, "job_id": 12}``) goes into each mask's provenance so quality
    figures can name the weights they measure. If another run finished the image
    meanwhile, nothing is stored.
    """
    db.refresh(image, with_for_update=True)  # PostgreSQL: serialise with a concurrent run of the same image
    if is_done(image):
        db.rollback()
        return StoredImage(0, 0, 0, 0)
    pixels = image.height * image.width
    masks: list[NewMask] = []
    dropped = 0
    for index, record in enumerate(records):
        try:
            checked = checked_mask(record["segmentation"], image.height, image.width)
        except EmptyMask:
            continue
        if checked.area >= max_mask_fraction * pixels:
            dropped += 1
            continue
        review = sampling.picks(image.id, index)  # by the generator's index: unchanged by skipped masks
        masks.append(
            NewMask(
                mask=checked,
                source=MaskSource.auto,
                stage=STAGE,
                provenance=provenance.auto(run or {}),
                review_status=ReviewStatus.pending if review else ReviewStatus.none,
                predicted_iou=float(record["predicted_iou"]),
                stability_score=float(record["stability_score"]),
                point_coords=_floats(record.get("point_coords")),
                crop_box=_floats(record.get("crop_box")),
            )
        )
    novel = without_duplicates(db, image, masks)
    stored = insert_masks(db, image, novel.masks)
    mark_done(image)
    db.commit()
    pending = sum(new.review_status == ReviewStatus.pending for new in novel.masks)
    return StoredImage(stored, dropped, pending, novel.skipped)


def mark_done(image: Image) -> None:
    """Record that `image` finished the fully automatic stage (part of the caller's transaction)."""
    image.stage_done = {**(image.stage_done or {}), STAGE.value: datetime.now(UTC).isoformat()}
