"""What the dashboard endpoints return. Times are seconds; shares are 0..1; None = nothing to measure.

Every figure is exact (read from rollups that triggers keep in step with each write, see
backend/dashboard/rollups.py), percentiles included (`percentile_cont`). One caveat: seconds totals
are floating sums kept by adding and subtracting, so after deletions they may differ from a fresh sum in
the last bits (~1e-12 relative).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from backend.jobs.schemas import JobOut
from backend.stages.schemas import GateOut
from backend.tables import ImageStatus, MaskSource, Stage

Scope = Literal["project", "me"]


class ImagesOut(BaseModel):
    total: int
    current_stage: Stage
    by_status: dict[ImageStatus, int]  # in the current stage
    done_per_stage: dict[Stage, int]  # images finished in each stage (images.stage_done)


class StageSourceCount(BaseModel):
    stage: Stage
    source: MaskSource
    masks: int


class HistogramBucket(BaseModel):
    low: int
    high: int | None  # inclusive; None = no upper bound
    images: int


class MasksOut(BaseModel):
    total: int
    by_stage_source: list[StageSourceCount]
    by_source: dict[MaskSource, int]
    by_stage: dict[Stage, int]
    per_image_mean: float | None
    per_image_histogram: list[HistogramBucket]


class TimingOut(BaseModel):
    timed_masks: int  # masks with a recorded annotation time
    total_seconds: float
    seconds_per_mask_mean: float | None
    seconds_per_mask_median: float | None
    seconds_per_mask_p90: float | None
    masks_per_hour: float | None  # per hour of annotation time
    clicks_per_mask: float | None


class PrefillOut(BaseModel):
    kept: int
    corrected: int
    deleted: int


class ReviewOut(BaseModel):
    reviewed: int
    accepted: int
    fixed: int
    rejected: int
    iou_threshold: float
    within_threshold: int
    share_within: float | None


class ModelVersionStats(BaseModel):
    id: int
    round: int  # 1-based order of creation among the listed versions
    name: str
    architecture: str
    origin: str
    status: str
    active: bool
    parent_id: int | None
    metrics: dict[str, Any]
    created_at: datetime
    architecture_change: str | None  # "vit_b → vit_h": the round started from another architecture
    encoder_trained: bool  # the round trained the image encoder too ("whole model"), not only the decoder


class EmbeddingCoverageOut(BaseModel):
    """How many of the project's images have an embedding of the serving (active) version while `job`
    (its embed job) is queued or running; until the job reaches them, the others are served with the
    previous version's embedding. `embedded` is counted only while the job is pending (None otherwise):
    the count walks the project's images, and the summary's other figures are rollups whose cost does
    not grow with the project."""

    model_version_id: int | None  # the active version; None before the project's first use of a model
    embedded: int | None
    images: int
    job: JobOut | None  # the queued or running embed job of that version


class JobsOut(BaseModel):
    active: list[JobOut]  # queued or running
    recent: list[JobOut]  # the latest finished ones


class DashboardOut(BaseModel):
    project_id: int
    scope: Scope  # "me": every mask/image/review figure is the caller's own
    images: ImagesOut
    masks: MasksOut
    timing: TimingOut
    prefill: PrefillOut
    review: ReviewOut
    models: list[ModelVersionStats]
    embeddings: EmbeddingCoverageOut
    jobs: JobsOut
    gate: GateOut


class AnnotatorRow(BaseModel):
    user_id: int
    username: str
    masks: int
    images_done: int
    timed_masks: int
    total_seconds: float
    seconds_per_mask_median: float | None
    seconds_per_mask_p90: float | None
    masks_per_hour: float | None
    clicks_per_mask: float | None
    first_mask_at: datetime | None
    last_mask_at: datetime | None


class TimelineRow(BaseModel):
    bucket: str  # ISO start of the hour/day, UTC
    masks: int
    manual_masks: int
    timed_masks: int
    total_seconds: float
    masks_per_hour: float | None
    annotators: int
