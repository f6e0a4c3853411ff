"""The one place mask rows are created: `add_mask` for one, `insert_masks` for many of one image.

Both take a `NewMask` (the pixels in whatever form the caller holds, who made it and how) and write
what no caller computes itself: the canonical RLE, its area and box (`backend.masks.rle`), and the
provenance in its own column, and the image's coverage (`backend.masks.coverage`). Neither commits: the mask is part of the caller's transaction (a
claim check, an image's "done" mark, a proposal row), so a mask is never stored half-way.

`insert_masks` is ``insert(masks).returning(id)`` executed with the rows as a list (an executemany):
SQLAlchemy's "insertmanyvalues" sends it as multi-row ``INSERT ... VALUES (...), (...) RETURNING id``
statements of up to `ROWS_PER_STATEMENT` rows, so an auto image's ~100 masks are one statement and
the dashboard's statement-level rollup triggers fire once for all of them. The statement is compiled
once and cached, where ``insert(Mask).values(rows)`` built and compiled a new 100-row statement per
image (most of the write's time: benchmarks/dashboard.py measures the bulk-load rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Table, bindparam, insert
from sqlalchemy.orm import Session

from backend.masks.coverage import refresh_coverage
from backend.masks.provenance import ORIGINS
from backend.masks.rle import CheckedMask, MaskPixels, checked_mask
from backend.tables import Image, Mask, MaskSource, ReviewStatus, Stage
from backend.tables.base import utcnow

# Rows per INSERT statement (insertmanyvalues' page): ~20 bound parameters each stays well below SQLite's
# 32,766 and PostgreSQL's 65,535.
ROWS_PER_STATEMENT = 1000

# The nullable JSON columns: a missing value is SQL NULL (not the JSON null) on either path.
_JSON_OPTIONAL = ("point_coords", "crop_box")
# The bulk path's one statement. Every row of an executemany binds the same columns, so the optional JSON
# columns are bound as JSON whose None is SQL NULL (the one-mask path leaves them out instead). RETURNING
# is what makes it insertmanyvalues' multi-row statements: without it psycopg's executemany sends one
# INSERT per row, and the rollup triggers would fire per row.
_MASKS = cast(Table, Mask.__table__)
_INSERT = (
    insert(_MASKS)
    .values({k: bindparam(f"json_{k}", type_=JSON(none_as_null=True)) for k in _JSON_OPTIONAL})
    .returning(_MASKS.c.id)
)


@dataclass(frozen=True)
class NewMask:
    """A mask to store on an image: its pixels, its kind, and the columns its maker knows.

    `mask` is a COCO RLE ({size: [h, w], counts: str | bytes | list of runs}), an H x W binary array
    or a `CheckedMask`; `provenance` comes from `backend.masks.provenance`."""

    mask: MaskPixels
    source: MaskSource
    stage: Stage
    provenance: dict[str, Any]
    client_id: str | None = None
    author_id: int | None = None
    parent_mask_id: int | None = None
    review_status: ReviewStatus = ReviewStatus.none
    predicted_iou: float | None = None
    stability_score: float | None = None
    point_coords: list[Any] | None = None  # the generator's prompt point(s), image pixels
    crop_box: list[Any] | None = None  # the generator's crop, XYWH image pixels
    seconds_spent: float | None = None
    clicks: int | None = None


def _row(image: Image, new: NewMask, checked: CheckedMask) -> dict[str, Any]:
    origin = new.provenance.get("origin")
    if origin not in ORIGINS:
        raise ValueError(f"provenance origin {origin!r} is none of {', '.join(ORIGINS)}")
    return {
        "image_id": image.id,
        "project_id": image.project_id,
        "rle": checked.rle,
        "bbox": checked.bbox,
        "area": checked.area,
        "source": new.source,
        "stage": new.stage,
        "provenance": new.provenance,
        "client_id": new.client_id,
        "author_id": new.author_id,
        "parent_mask_id": new.parent_mask_id,
        "review_status": new.review_status,
        "predicted_iou": new.predicted_iou,
        "stability_score": new.stability_score,
        "point_coords": new.point_coords,
        "crop_box": new.crop_box,
        "seconds_spent": new.seconds_spent,
        "clicks": new.clicks,
    }


def add_mask(db: Session, image: Image, new: NewMask) -> Mask:
    """Store one mask of `image` (flushed, so it has its id; not committed) and return it.

    Raises `backend.masks.rle.InvalidRle` when the mask is not one of the image (`EmptyMask` when it
    has no pixel), and whatever the flush raises (a client id already used on the image:
    IntegrityError)."""
    row = _row(image, new, checked_mask(new.mask, image.height, image.width))
    mask = Mask(**{k: v for k, v in row.items() if not (k in _JSON_OPTIONAL and v is None)})
    db.add(mask)
    db.flush()
    refresh_coverage(db, image.id)
    return mask


def insert_masks(db: Session, image: Image, masks: Sequence[NewMask]) -> int:
    """Store `masks` of `image` in multi-row INSERTs (an executemany, see the module); returns how many.

    Every mask is checked before anything is written, so a bad one (`InvalidRle`) stores none. The
    rows are not loaded into the session; they share one creation time."""
    now: datetime = utcnow()
    rows = [_row(image, new, checked_mask(new.mask, image.height, image.width)) for new in masks]
    for row in rows:
        row.update({f"json_{k}": row.pop(k) for k in _JSON_OPTIONAL}, created_at=now, updated_at=now)
    if rows:
        db.execute(_INSERT.execution_options(insertmanyvalues_page_size=ROWS_PER_STATEMENT), rows)
        refresh_coverage(db, image.id)
    return len(rows)
