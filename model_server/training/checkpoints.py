"""Resumable training state: the batch sampler and the checkpoint files of a training round.

A checkpoint (every `checkpoint_every` steps and at the end) holds the trainable weights, the
optimiser, the schedule, the sampler's RNG and the losses so far; a later run with the same
directory resumes from the newest one and continues exactly as the uninterrupted run would have.
Only `steps` and `checkpoint_every` may change between the two runs; anything else is refused.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..sam import Sam
from .config import TrainConfig, TrainResult

CHECKPOINT_GLOB = "checkpoint_*.pt"

# Fields that may differ between a run and the run that resumes it.
_RESUMABLE_CHANGES = {"steps", "checkpoint_every"}


class Sampler:
    """Epochs over the samples in seeded random order; its state is part of a checkpoint."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(n)
        self.position = 0

    def next_batch(self, size: int) -> list[int]:
        batch: list[int] = []
        while len(batch) < size:
            if self.position == self.n:
                self.order = self.rng.permutation(self.n)
                self.position = 0
            take = min(size - len(batch), self.n - self.position)
            batch.extend(int(i) for i in self.order[self.position : self.position + take])
            self.position += take
        return batch

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": self.order.tolist(), "position": self.position}

    def load(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = np.array(state["order"], dtype=np.int64)
        self.position = int(state["position"])


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"checkpoint_{step:07d}.pt"


def latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(directory.glob(CHECKPOINT_GLOB))
    return found[-1] if found else None


def save_checkpoint(
    directory: Path,
    model: Sam,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    sampler: Sampler,
    result: TrainResult,
    config: TrainConfig,
    n_samples: int,
) -> Path:
    """Write the training state atomically (temporary file, then rename), then drop older ones."""
    path = checkpoint_path(directory, result.steps_done)
    state = {
        "step": result.steps_done,
        "prompt_encoder": model.prompt_encoder.state_dict(),
        "mask_decoder": model.mask_decoder.state_dict(),
        # With the encoder trained: its weights (and LoRA adapters, unmerged) are training state too.
        "image_encoder": model.image_encoder.state_dict() if config.trains_encoder else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "sampler": sampler.state(),
        "losses": list(result.losses),
        "config": asdict(config),
        "n_samples": n_samples,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in directory.glob(CHECKPOINT_GLOB):
        if old != path:
            old.unlink()
    return path


def restore_checkpoint(
    path: Path,
    model: Sam,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    sampler: Sampler,
    result: TrainResult,
    config: TrainConfig,
    n_samples: int,
) -> None:
    try:
        state = torch.load(path, map_location=model.device, weights_only=False)
    except Exception as exc:  # truncated or foreign file: say which
        raise ValueError(f"cannot resume from {path}: not a readable training checkpoint ({exc})") from exc
    saved = {k: v for k, v in state["config"].items() if k not in _RESUMABLE_CHANGES}
    wanted = {k: v for k, v in asdict(config).items() if k not in _RESUMABLE_CHANGES}
    saved["lr_decay_steps"] = tuple(saved["lr_decay_steps"])
    if saved != wanted or state["n_samples"] != n_samples:
        changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise ValueError(
            f"cannot resume from {path}: it was written for another run "
            f"(changed: {', '.join(changed) or 'number of samples'}); use an empty checkpoint_dir"
        )
    model.prompt_encoder.load_state_dict(state["prompt_encoder"])
    model.mask_decoder.load_state_dict(state["mask_decoder"])
    if config.trains_encoder:
        model.image_encoder.load_state_dict(state["image_encoder"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.load(state["sampler"])
    result.steps_done = int(state["step"])
    result.losses = list(state["losses"])
    result.checkpoint_path = path
