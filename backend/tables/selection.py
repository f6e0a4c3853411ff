"""image_scores: what the served model says about each image for choosing what to annotate next.

One row per image (the scores of the model version that served the project when the score job ran,
`backend.selection.tasks`), with the ranks the selection strategies order `claim next` by; an image
without a row (not embedded or not scored yet) comes after every scored one, in upload order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, text
from sqlalchemy.orm import Mapped, mapped_column

from backend.tables.base import Base, utcnow


class ImageScore(Base):
    """Selection scores of one image (see `model_server.selection` for how they are computed)."""

    __tablename__ = "image_scores"
    # The near-duplicate link is cleared when its image goes: the index keeps that delete from scanning.
    __table_args__ = (
        Index(
            "ix_image_scores_near_duplicate_of",
            "near_duplicate_of",
            postgresql_where=text("near_duplicate_of IS NOT NULL"),
            sqlite_where=text("near_duplicate_of IS NOT NULL"),
        ),
    )

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    # The embedding mean-pooled per channel, L2-normalised: 256 float32 little-endian (1 KiB).
    pooled: Mapped[bytes] = mapped_column(LargeBinary)
    uncertainty: Mapped[float]  # 0..1, higher = the model is less sure of the image
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the figures it came from
    # Positions in each strategy's order (0 first), set for the images not done when ranked.
    random_rank: Mapped[int | None]
    diversity_rank: Mapped[int | None]
    mix_rank: Mapped[int | None]
    # The earlier image whose pooled embedding is the most similar, when at or above the threshold.
    near_duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"))
    near_duplicate_similarity: Mapped[float | None]
    scored_at: Mapped[datetime] = mapped_column(default=utcnow)
