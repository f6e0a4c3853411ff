"""What the API says about model versions and promotions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from backend.jobs.schemas import JobOut
from backend.tables.enums import ModelOrigin, ModelStatus


class ModelVersionOut(BaseModel):
    """A version as the ML engineer page lists it: `metrics.held_out` are its numbers on its round's
    held-out images, `metrics.parent_held_out` its parent's on the same images (side by side)."""

    id: int
    project_id: int | None
    parent_id: int | None
    name: str
    architecture: str
    origin: ModelOrigin
    status: ModelStatus
    sha256: str | None
    metrics: dict[str, Any]
    data_snapshot: dict[str, Any] | None
    hyperparameters: dict[str, Any] | None
    created_at: datetime
    active: bool = False
    decoder_url: str


class PromotionOut(BaseModel):
    """The project's new active version and, if its image encoder differs from the previous one's,
    the embedding job that recomputes the project's embeddings (None when they are reused)."""

    model: ModelVersionOut
    previous_id: int | None
    embed_job: JobOut | None
    embeddings_reused: int
