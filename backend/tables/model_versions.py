"""model_versions: every SAM checkpoint the engine knows, with where it came from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from backend.tables.base import Base, str_enum, utcnow
from backend.tables.enums import ModelOrigin, ModelStatus


class ModelVersion(Base):
    """`artifacts` maps artifact name -> storage key ({checkpoint, decoder_onnx, ...}); project None = global."""

    __tablename__ = "model_versions"
    # At most one default (migration 0008): the global version projects get when nobody chose one.
    __table_args__ = (
        Index(
            "uq_model_versions_is_default",
            "is_default",
            unique=True,
            postgresql_where=text("is_default"),
            sqlite_where=text("is_default"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    architecture: Mapped[str] = mapped_column(String(16))  # vit_t | vit_b | vit_l | vit_h
    origin: Mapped[ModelOrigin] = mapped_column(str_enum(ModelOrigin, "model_origin"))
    status: Mapped[ModelStatus] = mapped_column(str_enum(ModelStatus, "model_status"), default=ModelStatus.ready)
    artifacts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sha256: Mapped[str | None] = mapped_column(String(64))  # of the checkpoint
    # Of the image encoder's weights (the model side's `ModelInfo.encoder_sha256`): versions sharing it
    # share embeddings. NULL for versions registered before migration 0015 until first described.
    encoder_sha256: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_default: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    data_snapshot: Mapped[dict[str, Any] | None]
    hyperparameters: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
