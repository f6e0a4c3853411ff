from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backend.models import MaskSource, PrefillOutcome, ReviewStatus, Stage


class RleIn(BaseModel):
    """COCO RLE as the browser sends it: `counts` compressed (str) or uncompressed (list of runs)."""

    size: list[int] = Field(description="[height, width] of the image")
    counts: str | list[int]


class MaskCreate(BaseModel):
    client_id: str = Field(min_length=1, max_length=64, description="client-generated id making the save idempotent")
    rle: RleIn
    prompts: dict[str, Any] | None = Field(default=None, description="the clicks/box/strokes that made the mask")
    seconds_spent: float | None = Field(default=None, ge=0, le=24 * 3600)
    clicks: int | None = Field(default=None, ge=0, le=100_000)
    replaces_mask_id: int | None = Field(
        default=None, description="the mask of this image this one corrects: it is hidden, and a pre-filled one "
                                  "is recorded as corrected")


class MaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    client_id: str | None
    image_id: int
    project_id: int
    rle: dict[str, Any]
    bbox: list[float]
    area: int
    source: MaskSource
    stage: Stage
    predicted_iou: float | None
    stability_score: float | None
    prompts: dict[str, Any] | None
    seconds_spent: float | None
    clicks: int | None
    author_id: int | None
    review_status: ReviewStatus
    prefill_outcome: PrefillOutcome | None
    parent_mask_id: int | None = None
    created_at: datetime
