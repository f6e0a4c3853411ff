"""images (one row per distinct picture in a project) and embeddings (per image and model version)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, str_enum, utcnow
from backend.models.enums import ImageStatus


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
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Embedding(Base):
    """An image embedding (float16 array under `storage_key`) computed by one model version."""

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
