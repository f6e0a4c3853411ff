"""Parameters of a retraining round."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from backend.api.types import MAX_DB_ID, RequestModel

EncoderMode = Literal["frozen", "full", "last_k", "lora"]


class RetrainParams(RequestModel):
    """One round's knobs. Defaults suit a CPU worker; the paper's lr (8e-4) is the AdamW default.

    `min_masks`: a round with fewer usable masks fails up front (a model "trained" on three masks
    would only look like progress). `seed` fixes the train/held-out split (by image, see
    `dataset.split_images`) and the prompt simulation.

    `encoder_mode` says what of the image encoder the round trains besides the prompt encoder and
    mask decoder: nothing ("frozen": on the stored embeddings, the default), every weight ("full"),
    the last `encoder_last_k` blocks ("last_k") or rank-`lora_rank` adapters ("lora"); the last three
    train on the images themselves and need a GPU worker (or `Settings.allow_cpu_encoder_training`).
    `batch_size` is the effective batch of each step; `accumulation_steps` micro-batches make it up,
    so it must divide evenly. `from_model_version_id` starts the round from another ready version of
    the project or a global one (e.g. an imported vit_h after rounds on vit_b); by default it starts
    from the project's active version.
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
    encoder_mode: EncoderMode = Field(
        default="frozen", description="what of the image encoder the round trains (frozen = decoder side only)"
    )
    encoder_last_k: int = Field(default=2, ge=1, le=64, description="blocks trained when encoder_mode is last_k")
    lora_rank: int = Field(default=8, ge=1, le=256, description="adapter rank when encoder_mode is lora")
    accumulation_steps: int = Field(
        default=1, ge=1, le=256, description="micro-batches per step; batch_size must be a multiple of it"
    )
    from_model_version_id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DB_ID,
        description="start from this ready version of the project or a global one; None = the active version",
    )

    @model_validator(mode="after")
    def _batch_splits(self) -> RetrainParams:
        """A step's masks are split evenly over its micro-batches (a remainder would be silently dropped)."""
        if self.batch_size % self.accumulation_steps:
            raise ValueError(
                f"batch_size {self.batch_size} does not split into accumulation_steps {self.accumulation_steps} "
                "equal micro-batches: choose a batch_size that is a multiple of accumulation_steps"
            )
        return self

    @property
    def trains_encoder(self) -> bool:
        return self.encoder_mode != "frozen"
