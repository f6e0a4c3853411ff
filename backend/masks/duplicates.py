"""Masks a generator proposes for an image that the image already has: found here, not stored twice.

Detector pre-fill (`backend.detection.service`) and auto-annotation (`backend.auto.service`) both
call `without_duplicates` before the writer: a new mask whose IoU with a live mask of the image
(``deleted_at IS NULL``: drawn by hand, pre-filled, imported) is at least the project's
``duplicate_iou`` (`backend.projects.settings`, read here so both stages apply the same one) is left
out and counted, so an object an annotator already drew is not stored a
second time as an automatic mask. The IoUs are one pycocotools call per image on the RLEs
(`backend.masks.rle.iou_matrix`), not one per pair and no pixel decoded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.masks.rle import checked_mask, iou_matrix
from backend.masks.writer import NewMask
from backend.projects.settings import project_settings
from backend.tables import Image, Mask, Project


@dataclass(frozen=True)
class Deduplicated:
    masks: list[NewMask]  # to store, their pixels checked (`CheckedMask`), in the order given
    skipped: int  # matching a live mask of the image


def without_duplicates(db: Session, image: Image, masks: Sequence[NewMask]) -> Deduplicated:
    """`masks` less those with IoU >= the project's ``duplicate_iou`` with a live mask of `image`.

    Raises `backend.masks.rle.InvalidRle` for a mask that is not one of the image, as the writer would."""
    pixels = [checked_mask(new.mask, image.height, image.width) for new in masks]
    checked = [dataclasses.replace(new, mask=p) for new, p in zip(masks, pixels, strict=True)]
    live = list(db.scalars(select(Mask.rle).where(Mask.image_id == image.id, Mask.deleted_at.is_(None))))
    if not checked or not live:
        return Deduplicated(checked, 0)
    project = db.get(Project, image.project_id)
    assert project is not None  # the image's foreign key
    threshold = project_settings(project).duplicate_iou
    duplicate = iou_matrix([p.rle for p in pixels], live).max(axis=1) >= threshold
    return Deduplicated([new for new, dup in zip(checked, duplicate, strict=True) if not dup], int(duplicate.sum()))
