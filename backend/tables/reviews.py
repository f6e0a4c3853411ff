"""mask_reviews: one row per reviewed auto mask (who, when, what they decided, how much the mask changed).

The review queue itself is `masks.review_status` (pending for the sampled auto masks); this table keeps
the outcome: the IoU between the auto mask and what the reviewer left (1.0 for accept, the IoU with
the correction for fix, none for reject), which is what the project's quality figure (the paper's
"94% of masks above 90% IoU after correction") is computed from. One review per mask (unique).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, text
from sqlalchemy.orm import Mapped, mapped_column

from backend.tables.base import Base, str_enum, utcnow


class ReviewDecision(enum.StrEnum):
    accept = "accept"
    reject = "reject"
    fix = "fix"


class MaskReview(Base):
    __tablename__ = "mask_reviews"
    # Deleting a mask clears the reviews that name it as the fix: without this index each deleted mask
    # scans every review (migration 0012). Partial: only fixes have one.
    __table_args__ = (
        Index(
            "ix_mask_reviews_fixed_mask_id",
            "fixed_mask_id",
            postgresql_where=text("fixed_mask_id IS NOT NULL"),
            sqlite_where=text("fixed_mask_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mask_id: Mapped[int] = mapped_column(ForeignKey("masks.id", ondelete="CASCADE"), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decision: Mapped[ReviewDecision] = mapped_column(str_enum(ReviewDecision, "review_decision"))
    # IoU(auto mask, mask after review): 1.0 accepted, IoU with the correction when fixed, None rejected.
    iou: Mapped[float | None]
    fixed_mask_id: Mapped[int | None] = mapped_column(ForeignKey("masks.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
