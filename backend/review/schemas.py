from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.annotation.schemas import MaskOut, RleIn
from backend.api.types import RequestModel
from backend.images.schemas import ImageOut
from backend.tables import ReviewDecision


class ReviewIn(RequestModel):
    """`{"decision": "accept"}`, `{"decision": "reject"}` or `{"decision": "fix", "rle": {...}}`."""

    decision: Literal["accept", "reject", "fix"]
    rle: RleIn | None = Field(default=None, description="the corrected mask (fix only), COCO RLE of the image")
    seconds_spent: float | None = Field(default=None, ge=0, le=24 * 3600)

    @model_validator(mode="after")
    def _rle_only_with_fix(self) -> ReviewIn:
        if self.decision == "fix" and self.rle is None:
            raise ValueError("decision 'fix' needs the corrected mask in 'rle'")
        if self.decision != "fix" and self.rle is not None:
            raise ValueError(f"decision {self.decision!r} takes no 'rle' (only 'fix' does)")
        return self


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    mask_id: int
    decision: ReviewDecision
    iou: float | None = Field(description="IoU(auto mask, mask after review); null when rejected")
    fixed_mask: MaskOut | None
    reviewer_id: int | None
    created_at: datetime


class ReviewItem(BaseModel):
    """The next mask to review, its image, and how many are pending in the project."""

    mask: MaskOut
    image: ImageOut
    pending: int


class ReviewSummaryOut(BaseModel):
    auto_masks: int
    sampled: int
    pending: int
    accepted: int
    fixed: int
    rejected: int
    reviewed: int
    iou_threshold: float
    above_threshold: int = Field(description="reviewed masks with IoU after review above the threshold")
    share_above_threshold: float | None = Field(
        description="above_threshold / reviewed (accepted count as IoU 1, rejected as below); null before any review"
    )
    mean_iou_fixed: float | None
    model_version_ids: list[int] = Field(description="model versions that produced the sampled auto masks")
