"""Parameters of a retraining round."""

from __future__ import annotations

from pydantic import Field

from backend.api.types import RequestModel


class RetrainParams(RequestModel):
    """One round's knobs. Defaults suit a CPU worker; the paper's lr (8e-4) is the AdamW default.

    `min_masks`: a round with fewer usable masks fails up front (a model "trained" on three masks
    would only look like progress). `seed` fixes the train/held-out split (by image, see
    `dataset.split_images`) and the prompt simulation.
    """

    steps: int = Field(default=200, ge=1, le=1_000_000)
    lr: float = Field(default=8e-4, gt=0, le=1.0)
    batch_size: int = Field(default=4, ge=1, le=256)
    held_out_fraction: float = Field(default=0.2, gt=0, lt=1)
    auto_promote: bool | None = Field(
        default=None, description="promote if better on held-out; None = the project's `auto_promote` setting"
    )
    min_masks: int = Field(default=10, ge=2, le=1_000_000)
    max_clicks: int = Field(default=20, ge=1, le=100)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
