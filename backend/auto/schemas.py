"""The automatic mask generator's parameters as the API accepts them.

Same names, defaults and meaning as the official `SamAutomaticMaskGenerator` (DESIGN.md §1), plus
`max_mask_fraction`: SA-1B dropped masks covering 95% of the image or more. Anything absurd
(no points, thresholds outside 0..1, unknown keys) is a 422 before a job exists.

The work is bounded too: `MAX_PROMPTS_PER_IMAGE` point prompts per image over every crop layer, the
official grid (32×32) with two crop layers (1 + 4 + 16 crops). At ~40 s per 1024 prompts on a 2-core
CPU (benchmarks/amg.py, vit_t) that is already ~15 minutes an image; 256 points a side with four
crop layers was accepted before and would have run for days on the CPU.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from backend.api.types import RequestModel

MAX_PROMPTS_PER_IMAGE = 32 * 32 * (1 + 4 + 16)


class AutoParams(RequestModel):
    points_per_side: int = Field(default=32, ge=1, le=128, description="grid of points per image side")
    points_per_batch: int = Field(default=64, ge=1, le=4096, description="prompts decoded at once")
    pred_iou_thresh: float = Field(default=0.88, ge=0.0, le=1.0)
    stability_score_thresh: float = Field(default=0.95, ge=0.0, le=1.0)
    stability_score_offset: float = Field(default=1.0, ge=0.0, le=100.0, description="logit offset")
    box_nms_thresh: float = Field(default=0.7, ge=0.0, le=1.0)
    crop_n_layers: int = Field(default=0, ge=0, le=3)
    crop_nms_thresh: float = Field(default=0.7, ge=0.0, le=1.0)
    crop_overlap_ratio: float = Field(default=512 / 1500, ge=0.0, lt=1.0)
    crop_n_points_downscale_factor: int = Field(default=1, ge=1, le=16)
    min_mask_region_area: int = Field(default=0, ge=0, le=1_000_000)
    max_mask_fraction: float = Field(
        default=0.95,
        gt=0.0,
        le=1.0,
        description="masks covering at least this share of the image are dropped (SA-1B: 0.95; 1.0 keeps all "
        "but full-image masks)",
    )

    @model_validator(mode="after")
    def _every_crop_layer_has_points(self) -> AutoParams:
        deepest = self.points_per_side // (self.crop_n_points_downscale_factor**self.crop_n_layers)
        if deepest < 1:
            raise ValueError(
                f"points_per_side {self.points_per_side} // crop_n_points_downscale_factor "
                f"{self.crop_n_points_downscale_factor}^crop_n_layers {self.crop_n_layers} leaves no points "
                "in the deepest crop layer"
            )
        return self

    @model_validator(mode="after")
    def _bounded_work(self) -> AutoParams:
        prompts = self.prompts_per_image()
        if prompts > MAX_PROMPTS_PER_IMAGE:
            raise ValueError(
                f"points_per_side {self.points_per_side} with crop_n_layers {self.crop_n_layers} makes {prompts} "
                f"point prompts per image, more than {MAX_PROMPTS_PER_IMAGE} (32x32 with two crop layers)"
            )
        return self

    def prompts_per_image(self) -> int:
        """Point prompts over every crop layer: layer i has 4^i crops of (side // factor^i)^2 points."""
        return sum(
            4**i * (self.points_per_side // self.crop_n_points_downscale_factor**i) ** 2
            for i in range(self.crop_n_layers + 1)
        )

    def generator_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the generator (everything but the backend's own filter)."""
        return self.model_dump(exclude={"max_mask_fraction"})
