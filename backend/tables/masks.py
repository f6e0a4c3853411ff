"""masks (COCO RLE, one row per object mask) and annotation_sessions (time an annotator spent)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from backend.tables.base import Base, str_enum, utcnow
from backend.tables.enums import MaskSource, PrefillOutcome, ReviewStatus, Stage


class Mask(Base):
    """`rle` is COCO RLE {size: [h, w], counts: str} and `bbox` [x, y, w, h], both in the image frame."""

    __tablename__ = "masks"
    # Dashboard (backend/dashboard, migrations 0003/0004): most figures come from the rollup tables of
    # backend/tables/dashboard.py; these partial indexes over live masks serve the exact percentiles
    # (project, per author) and the annotators' first/last mask.
    __table_args__ = (
        # Client ids are unique per image (migration 0007), not globally: a global constraint would
        # tell a caller that an id is in use in a project they cannot see.
        UniqueConstraint("image_id", "client_id"),
        Index(
            "ix_masks_live_seconds",
            "project_id",
            "seconds_spent",
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        Index(
            "ix_masks_live_author_seconds",
            "project_id",
            "author_id",
            "seconds_spent",
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        Index(
            "ix_masks_live_author_created",
            "project_id",
            "author_id",
            "created_at",
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        # Deleting a mask sets its children's parent_mask_id to NULL: without this index every deleted
        # mask scans the whole table (migration 0012). Partial: few masks have a parent.
        Index(
            "ix_masks_parent_mask_id",
            "parent_mask_id",
            postgresql_where=text("parent_mask_id IS NOT NULL"),
            sqlite_where=text("parent_mask_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Client-generated id making saves idempotent (a retried POST to the same image returns the row).
    client_id: Mapped[str | None] = mapped_column(String(64))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    rle: Mapped[dict[str, Any]]
    bbox: Mapped[list[Any]]
    area: Mapped[int]
    source: Mapped[MaskSource] = mapped_column(str_enum(MaskSource, "mask_source"))
    stage: Mapped[Stage] = mapped_column(str_enum(Stage, "mask_stage"))
    predicted_iou: Mapped[float | None]
    stability_score: Mapped[float | None]
    point_coords: Mapped[list[Any] | None]
    crop_box: Mapped[list[Any] | None]
    # How the mask came to be, ``{"origin": ..., ...}`` (migration 0010): see backend/masks/provenance.py.
    provenance: Mapped[dict[str, Any]]
    seconds_spent: Mapped[float | None]
    clicks: Mapped[int | None]
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    review_status: Mapped[ReviewStatus] = mapped_column(
        str_enum(ReviewStatus, "review_status"), default=ReviewStatus.none
    )
    prefill_outcome: Mapped[PrefillOutcome | None] = mapped_column(str_enum(PrefillOutcome, "prefill_outcome"))
    parent_mask_id: Mapped[int | None] = mapped_column(ForeignKey("masks.id", ondelete="SET NULL"))
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AnnotationSession(Base):
    """One annotator's continuous work on one image; `seconds_active` excludes idle time."""

    __tablename__ = "annotation_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    seconds_active: Mapped[float | None]
