from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from backend.models import MaskSource, PrefillOutcome, ReviewStatus, Stage


# Bounds of the client's description of how a mask was made (`Prompts`), by what the annotate page
# sends: points it clicked (far fewer than this), one box, and the number of brush strokes. A
# coordinate or side is bounded above the longest side an upload within the default limits can have
# (50 Mpx at an aspect ratio of at most 64: 56,569 px; backend/images/validation.py).
MAX_PROMPT_POINTS = 500
MAX_COORDINATE = 100_000
MAX_STROKES = 10_000
Coordinate = Annotated[float, Field(ge=0, le=MAX_COORDINATE, allow_inf_nan=False)]
Side = Annotated[StrictInt, Field(ge=1, le=MAX_COORDINATE)]


class RleIn(BaseModel):
    """COCO RLE as the browser sends it: `counts` compressed (str) or uncompressed (list of runs).

    Its length against the image's size is checked by `backend.annotation.rle.check_rle` before it
    is parsed."""

    size: list[Side] = Field(min_length=2, max_length=2, description="[height, width] of the image")
    counts: StrictStr | list[StrictInt]


class PromptPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: Coordinate
    y: Coordinate
    label: Literal[0, 1] = Field(description="1 foreground, 0 background")


class Prompts(BaseModel):
    """The clicks, box and strokes that made a mask (what the annotate page sends), in image pixels."""

    model_config = ConfigDict(extra="forbid")

    points: list[PromptPoint] = Field(default_factory=list, max_length=MAX_PROMPT_POINTS)
    box: tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None = Field(
        default=None, description="[x0, y0, x1, y1]")
    candidate: int | None = Field(default=None, ge=0, le=3, description="decoder output kept (0 single, 1-3)")
    strokes: int = Field(default=0, ge=0, le=MAX_STROKES, description="brush/eraser strokes applied after")


class MaskCreate(BaseModel):
    client_id: str = Field(min_length=1, max_length=64, description="client-generated id making the save idempotent")
    rle: RleIn
    prompts: Prompts | None = Field(default=None, description="the clicks/box/strokes that made the mask")
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
