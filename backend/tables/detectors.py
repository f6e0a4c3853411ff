"""detector_versions (each trained box detector of a project) and detector_proposals (which images a
detector already pre-filled).

A detector version is trained on the SAM embeddings of one model version (``model_version_id``): its
input IS that encoder's output, so proposals must use embeddings of the same model version.
`artifacts` maps artifact name -> storage key ({weights: key}); `metrics` holds the held-out
evaluation (recall_50, precision_50, ap50, ...) and the training figures; the train / held-out
image ids are kept for lineage and reproducibility.

A proposal row is written in the same transaction as the pre-filled masks of its image, so an image
is proposed at most once (unique image_id), even when several proposal jobs or workers overlap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.tables.base import Base, str_enum, utcnow
from backend.tables.enums import ModelStatus


class DetectorVersion(Base):
    __tablename__ = "detector_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[ModelStatus] = mapped_column(str_enum(ModelStatus, "detector_status"), default=ModelStatus.training)
    artifacts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    train_image_ids: Mapped[list[Any]] = mapped_column(default=list)
    heldout_image_ids: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DetectorProposal(Base):
    __tablename__ = "detector_proposals"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    detector_version_id: Mapped[int | None] = mapped_column(ForeignKey("detector_versions.id", ondelete="SET NULL"))
    boxes: Mapped[int]  # detections above the score threshold
    masks: Mapped[int]  # pre-filled masks stored (passed the predicted-IoU threshold too)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
