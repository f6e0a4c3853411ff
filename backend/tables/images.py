"""images (one row per distinct picture in a project) and embeddings (per image and model version)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, column_property, mapped_column

from backend.tables.base import Base, str_enum, utcnow
from backend.tables.enums import ImageStatus
from backend.tables.masks import Mask
from backend.tables.selection import ImageScore
from backend.tables.users import User


class Image(Base):
    """A stored RGB image. `width`/`height` are after EXIF orientation; the file is at `storage_key`."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("project_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    file_name: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))  # of the stored bytes
    width: Mapped[int]
    height: Mapped[int]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Status in the project's current stage; `stage_done` maps stage name -> ISO time it was finished.
    status: Mapped[ImageStatus] = mapped_column(
        str_enum(ImageStatus, "image_status"), default=ImageStatus.new, index=True
    )
    stage_done: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The claim: who holds the image's live lock (`backend.annotation.service`).
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    locked_until: Mapped[datetime | None]
    # The assignment: who should annotate it (set by a manager; claims of others are refused).
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Share of the pixels no live mask covers, kept by `backend.masks.coverage.refresh_coverage`.
    uncovered_fraction: Mapped[float] = mapped_column(default=1.0)

    # What `ImageOut` shows besides the columns, as subqueries loaded on first access (one query for
    # both); a listing undefers the group, so a page of images costs one statement, not one per image.
    mask_count: Mapped[int] = column_property(
        select(func.count(Mask.id))
        .where(Mask.image_id == id, Mask.deleted_at.is_(None))
        .correlate_except(Mask)
        .scalar_subquery(),
        deferred=True,
        group="image_out",
    )
    assigned_username: Mapped[str | None] = column_property(
        select(User.username).where(User.id == assigned_to).correlate_except(User).scalar_subquery(),
        deferred=True,
        group="image_out",
    )
    # The earlier image this one nearly repeats (`backend.selection.service.flag_near_duplicates`).
    near_duplicate_of: Mapped[int | None] = column_property(
        select(ImageScore.near_duplicate_of)
        .where(ImageScore.image_id == id)
        .correlate_except(ImageScore)
        .scalar_subquery(),
        deferred=True,
        group="image_out",
    )


class Embedding(Base):
    """An image embedding of one model version: where the model side stored it (`storage_key`, the
    `EmbeddingInfo` key, shared by every version with the same image encoder) and the image's sizes."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("image_id", "model_version_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    storage_key: Mapped[str] = mapped_column(String(255))
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[Any]]
    original_h: Mapped[int]
    original_w: Mapped[int]
    input_h: Mapped[int]
    input_w: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
