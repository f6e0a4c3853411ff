"""What the detector endpoints accept and return. Absurd values are a 422 before any job exists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backend.api.types import DbId, RequestModel
from backend.tables import ModelStatus


class DetectorTrainParams(RequestModel):
    """Training request: the split, the minimum data, and the head's main hyperparameters."""

    min_boxes: int = Field(default=10, ge=1, le=1_000_000, description="fewer annotated masks than this is refused")
    held_out_fraction: float = Field(default=0.2, gt=0.0, lt=1.0, description="share of images kept for evaluation")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="seeds the split and the training")
    epochs: int = Field(default=40, ge=1, le=1000)
    width: int = Field(default=64, ge=8, le=512)
    depth: int = Field(default=3, ge=1, le=8)
    score_thresh: float = Field(
        default=0.5, ge=0.0, le=1.0, description="operating point of the held-out recall/precision"
    )

    def detector_config(self) -> dict[str, Any]:
        """The `model_server.detector.DetectorConfig` fields these parameters set."""
        return {
            "epochs": self.epochs,
            "width": self.width,
            "depth": self.depth,
            "seed": self.seed,
            "min_boxes": self.min_boxes,
        }


class ProposeParams(RequestModel):
    """Proposal request: which detector, and the thresholds a pre-filled mask must pass."""

    detector_version_id: DbId | None = Field(default=None, description="default: the newest ready detector")
    score_thresh: float = Field(default=0.5, ge=0.0, le=1.0, description="minimum calibrated detector score")
    pred_iou_thresh: float = Field(default=0.5, ge=0.0, le=1.0, description="minimum SAM predicted IoU")
    nms_thresh: float = Field(default=0.5, ge=0.0, le=1.0, description="box NMS IoU threshold")
    max_boxes: int = Field(default=50, ge=1, le=1000, description="best detections turned into masks per image")


class DetectorVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    model_version_id: int | None
    job_id: int | None
    name: str
    status: ModelStatus
    metrics: dict[str, Any]
    hyperparameters: dict[str, Any]
    train_image_ids: list[int]
    heldout_image_ids: list[int]
    created_at: datetime
