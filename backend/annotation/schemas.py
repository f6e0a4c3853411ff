from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from backend.api.types import DbId, RequestModel
from backend.masks.provenance import prompts_of
from backend.tables import MaskSource, PrefillOutcome, ReviewStatus, Stage

# Bounds of the client's description of how a mask was made (`Prompts`), by what the annotate page
# sends: points it clicked (far fewer than this), one box, and the number of brush strokes. A
# coordinate or side is bounded above the longest side an upload within the default limits can have
# (50 Mpx at an aspect ratio of at most 64: 56,569 px; backend/images/validation.py).
MAX_PROMPT_POINTS = 500
MAX_COORDINATE = 100_000
MAX_STROKES = 10_000
Coordinate = Annotated[float, Field(ge=0, le=MAX_COORDINATE)]
Side = Annotated[int, Field(ge=1, le=MAX_COORDINATE)]
# The schema's absolute bounds of an RLE (any image the sides allow); `check_rle` then holds it to
# the image's own size before parsing: at most 2·h·w + 1 characters, h·w + 1 runs.
MAX_RLE_PIXELS = MAX_COORDINATE**2
Run = Annotated[int, Field(ge=0, le=MAX_RLE_PIXELS)]


class RleIn(RequestModel):
    """COCO RLE as the browser sends it: `counts` compressed (str) or uncompressed (list of runs).

    Its length against the image's size is checked by `backend.masks.rle.check_rle` before it
    is parsed."""

    size: list[Side] = Field(min_length=2, max_length=2, description="[height, width] of the image")
    counts: (
        Annotated[str, Field(max_length=2 * MAX_RLE_PIXELS + 1)]
        | Annotated[list[Run], Field(max_length=MAX_RLE_PIXELS + 1)]
    )


class PromptPoint(RequestModel):
    x: Coordinate
    y: Coordinate
    label: Literal[0, 1] = Field(description="1 foreground, 0 background")


class Prompts(RequestModel):
    """The clicks, box and strokes that made a mask (what the annotate page sends), in image pixels."""

    points: list[PromptPoint] = Field(default_factory=list, max_length=MAX_PROMPT_POINTS)
    box: list[Coordinate] | None = Field(default=None, min_length=4, max_length=4, description="[x0, y0, x1, y1]")
    candidate: int | None = Field(default=None, ge=0, le=3, description="decoder output kept (0 single, 1-3)")
    strokes: int = Field(default=0, ge=0, le=MAX_STROKES, description="brush/eraser strokes applied after")


class MaskCreate(RequestModel):
    client_id: str = Field(min_length=1, max_length=64, description="client-generated id making the save idempotent")
    rle: RleIn
    prompts: Prompts | None = Field(default=None, description="the clicks/box/strokes that made the mask")
    seconds_spent: float | None = Field(default=None, ge=0, le=24 * 3600)
    clicks: int | None = Field(default=None, ge=0, le=100_000)
    replaces_mask_id: DbId | None = Field(
        default=None,
        description="the mask of this image this one corrects: it is hidden, and a pre-filled one "
        "is recorded as corrected",
    )


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
    provenance: dict[str, Any] = Field(description="how the mask came to be: {origin: annotated|review_fix|...}")
    seconds_spent: float | None
    clicks: int | None
    author_id: int | None
    review_status: ReviewStatus
    prefill_outcome: PrefillOutcome | None
    parent_mask_id: int | None = None
    created_at: datetime

    @computed_field(description="the clicks/box/strokes an annotator's mask was made with; null for other masks")
    def prompts(self) -> dict[str, Any] | None:
        return prompts_of(self.provenance)
