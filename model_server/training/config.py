"""What a training round is asked (`TrainConfig`) and what it answers (`TrainResult`).

`encoder_mode` says what of the image encoder a round trains (the prompt encoder and mask decoder
are always trained): "frozen" (train on cached embeddings, the default and the only mode a CPU
runs), "full" (every encoder weight), "last_k" (the last `encoder_last_k` transformer blocks and
the neck) or "lora" (rank-`lora_rank` adapters on every attention's qkv and proj, merged into the
weights when the round ends, so the result is a plain model). A trained encoder changes every
embedding: the caller re-embeds (keyed by the new encoder's identity) before the new decoder is used.

`batch_size` is the effective batch: masks per optimiser step, whatever the hardware. Each of the
`world_size` processes (DDP) runs `accumulation_steps` micro-batches of
batch_size / (world_size · accumulation_steps) masks per step, so a round gives the same result
(within float rounding) on one GPU or eight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ENCODER_MODES = ("frozen", "full", "last_k", "lora")


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
    max_mask_fraction: float = 0.9  # masks covering more of the image are skipped
    encoder_mode: str = "frozen"  # one of ENCODER_MODES, see the module docstring
    encoder_last_k: int = 0  # blocks trained in "last_k" mode
    lora_rank: int = 8
    lora_alpha: float = 16.0  # the adapter's output is scaled by lora_alpha / lora_rank
    accumulation_steps: int = 1  # micro-batches per optimiser step and process
    # None: on when training on CUDA. bfloat16 autocast of the forward passes (weights stay float32).
    mixed_precision: bool | None = None
    # None: on when training the encoder on CUDA. Recompute each encoder block in the backward pass.
    activation_checkpointing: bool | None = None
    # Encoder training on a CPU takes days for a real encoder; tests set this with a tiny one.
    allow_cpu_encoder_training: bool = False

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
        if self.encoder_mode not in ENCODER_MODES:
            raise ValueError(f"encoder_mode must be one of {', '.join(ENCODER_MODES)}, got {self.encoder_mode!r}")
        if self.encoder_mode == "last_k" and self.encoder_last_k < 1:
            raise ValueError(f"encoder_mode last_k needs encoder_last_k >= 1, got {self.encoder_last_k}")
        if self.lora_rank < 1 or self.accumulation_steps < 1:
            raise ValueError("lora_rank and accumulation_steps must be at least 1")
        if not 0 <= self.box_probability <= 1 or not 0 < self.max_mask_fraction <= 1:
            raise ValueError("box_probability must be in [0, 1] and max_mask_fraction in (0, 1]")

    @property
    def trains_encoder(self) -> bool:
        return self.encoder_mode != "frozen"

    def micro_batch(self, world_size: int) -> int:
        """Masks per forward pass and process; ValueError unless the effective batch splits evenly."""
        parts = world_size * self.accumulation_steps
        if self.batch_size % parts:
            raise ValueError(
                f"batch_size {self.batch_size} does not split into {world_size} processes x "
                f"{self.accumulation_steps} accumulation steps"
            )
        return self.batch_size // parts

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
