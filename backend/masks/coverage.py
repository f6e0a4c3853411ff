"""What is still missing on an image: the share of its pixels no live mask covers.

Stored on the image row (``images.uncovered_fraction``, migration 0014) so the images list reads a
column instead of merging every image's masks per request; `refresh_coverage` recomputes it in the
caller's transaction wherever an image's live masks change: the mask writer (`backend.masks.writer`)
and the soft deletes (annotation, review). The union is pycocotools' ``merge`` of the RLEs and its
``area``: run-length work, no pixel decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pycocotools import mask as mask_util
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.tables import Image, Mask


def uncovered_fraction(height: int, width: int, rles: Sequence[dict[str, Any]]) -> float:
    """Share of an image `height` x `width` outside the union of `rles` (stored RLEs, str counts)."""
    if not rles:
        return 1.0
    union = mask_util.merge([{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles], intersect=0)
    return 1.0 - int(mask_util.area(union)) / (height * width)


def refresh_coverage(db: Session, image_id: int) -> None:
    """Recompute `image_id`'s ``uncovered_fraction`` from its live masks (not committed)."""
    image = db.get(Image, image_id)
    if image is None:
        return
    live = list(db.scalars(select(Mask.rle).where(Mask.image_id == image_id, Mask.deleted_at.is_(None))))
    db.execute(
        update(Image)
        .where(Image.id == image_id)
        .values(uncovered_fraction=uncovered_fraction(image.height, image.width, live))
    )  # a Core UPDATE: part of the caller's transaction now, and the loaded `image` is kept in step
