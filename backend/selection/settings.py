"""The selection part of a project's settings (`backend.projects.settings.ProjectSettings.selection`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from backend.api.types import RequestModel

Strategy = Literal["upload_order", "random", "uncertainty", "diversity", "mix"]
STRATEGIES: tuple[Strategy, ...] = ("upload_order", "random", "uncertainty", "diversity", "mix")


class SelectionSettings(RequestModel):
    """How `claim next`, the annotate page's peek and the automatic stage's queue order the images."""

    strategy: Strategy = Field(
        "upload_order",
        description="upload_order | random (seeded) | uncertainty (the served model is least sure first) | "
        "diversity (k-center greedy over pooled embeddings: near-duplicate frames last) | mix (both)",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of the random order")
    near_duplicate_similarity: float = Field(
        0.99,
        gt=0,
        le=1,
        description="an image whose pooled embedding has this cosine similarity or more with an earlier one is "
        "flagged as its near duplicate (flagged, not refused)",
    )
