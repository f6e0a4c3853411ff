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
from pycocotools import mask as mask_util
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.projects.settings import project_settings
from backend.tables import Image, Mask, MaskSource, Project, ReviewStatus, Stage

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


def is_done(image: Image) -> bool:
    return STAGE.value in (image.stage_done or {})


def images_to_do(db: Session, project_id: int) -> tuple[int, list[int]]:
    """(number of the project's images, ids of those not yet done for the stage, in id order)."""
    rows = db.execute(select(Image.id, Image.stage_done).where(Image.project_id == project_id).order_by(Image.id)).all()
    return len(rows), [image_id for image_id, done in rows if STAGE.value not in (done or {})]


def _coco_rle(segmentation: Mapping[str, Any], height: int, width: int) -> dict[str, Any]:
    """The record's COCO RLE with str counts, checked against the image size."""
    size = [int(v) for v in segmentation["size"]]
    if size != [height, width]:
        raise ValueError(f"generator returned a mask of size {size} for an image of size {[height, width]}")
    counts = segmentation["counts"]
    if isinstance(counts, list):  # uncompressed runs: compress
        counts = mask_util.frPyObjects({"size": size, "counts": counts}, height, width)["counts"]
    return {"size": size, "counts": counts.decode("ascii") if isinstance(counts, bytes) else str(counts)}


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
    provenance: dict[str, Any] | None = None,
) -> StoredImage:
    """Insert `image`'s auto masks and mark it done, in one transaction (committed here).

    `records` are the generator's coco_rle records (segmentation, predicted_iou, stability_score,
    point_coords, crop_box). Area and bbox are recomputed from the RLE with pycocotools, as for every
    other mask: COCO's box has width x_max - x_min + 1, one more than the official generator reports. Masks covering at least
    `max_mask_fraction` of the image are dropped. `provenance` (the model version and job, e.g.
    ``{"model_version_id": 3, "job_id": 12}``) is kept in each mask's ``prompts`` so quality figures
    can name the weights they measure. If another run finished the image meanwhile, nothing is stored.
    """
    db.refresh(image, with_for_update=True)  # PostgreSQL: serialise with a concurrent run of the same image
    if is_done(image):
        db.rollback()
        return StoredImage(0, 0, 0)
    pixels = image.height * image.width
    stored = dropped = pending = 0
    for index, record in enumerate(records):
        rle = _coco_rle(record["segmentation"], image.height, image.width)
        encoded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        area = int(mask_util.area(encoded))
        if area == 0:
            continue
        if area >= max_mask_fraction * pixels:
            dropped += 1
            continue
        review = sampling.picks(image.id, index)
        db.add(
            Mask(
                image_id=image.id,
                project_id=image.project_id,
                rle=rle,
                bbox=[float(v) for v in mask_util.toBbox(encoded)],
                area=area,
                source=MaskSource.auto,
                stage=STAGE,
                predicted_iou=float(record["predicted_iou"]),
                stability_score=float(record["stability_score"]),
                point_coords=_floats(record.get("point_coords")),
                crop_box=_floats(record.get("crop_box")),
                review_status=ReviewStatus.pending if review else ReviewStatus.none,
                prompts=dict(provenance) if provenance else None,
            )
        )
        stored += 1
        pending += review
    mark_done(image)
    db.commit()
    return StoredImage(stored, dropped, pending)


def mark_done(image: Image) -> None:
    """Record that `image` finished the fully automatic stage (part of the caller's transaction)."""
    image.stage_done = {**(image.stage_done or {}), STAGE.value: datetime.now(UTC).isoformat()}
