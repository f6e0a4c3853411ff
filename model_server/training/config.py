"""What a decoder training run is asked (`TrainConfig`) and what it answers (`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 8
    lr: float = 8e-4
    weight_decay: float = 0.1
    warmup_steps: int = 250
    lr_decay_steps: tuple[int, ...] = ()  # steps at which the learning rate is multiplied by lr_decay_gamma
    lr_decay_gamma: float = 0.1
    clicks_per_sample: int = 8  # rounds that add a point sampled from the error region
    no_point_rounds: int = 2  # rounds that add no point (mask feedback only)
    box_probability: float = 0.5  # chance the first prompt is a noisy box instead of a point
    box_noise_fraction: float = 0.1
    box_max_noise: float = 20.0  # pixels of the 1024 model frame
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    train_image_encoder: bool = False
    max_mask_fraction: float = 0.9  # masks covering more of the image are skipped

    def __post_init__(self) -> None:
        self.lr_decay_steps = tuple(int(s) for s in self.lr_decay_steps)
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "checkpoint_every": self.checkpoint_every,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        for name in ("warmup_steps", "clicks_per_sample", "no_point_rounds", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.box_probability <= 1 or not 0 < self.max_mask_fraction <= 1:
            raise ValueError("box_probability must be in [0, 1] and max_mask_fraction in (0, 1]")

    @property
    def rounds(self) -> int:
        """Decoder passes per mask and step: the first prompt, the clicks, the no-point rounds."""
        return 1 + self.clicks_per_sample + self.no_point_rounds


@dataclass
class TrainResult:
    steps_done: int
    losses: list[float] = field(default_factory=list)  # one per step, from step 1 (resumed ones included)
    checkpoint_path: Path | None = None
    stopped_early: bool = False
