"""What of the image encoder a round trains (`TrainConfig.encoder_mode`), set up and torn down.

LoRA is pure torch (`torch.nn.utils.parametrize`): each attention's qkv and proj weight becomes
W + (alpha / rank) · B·A with W frozen, A small random and B zero, so the model's outputs are
unchanged until B is trained; `finish_encoder` folds B·A into W and removes the parametrisation,
so the round's result has the official module layout and state-dict keys. No adapter library: the
two matrices per projection are all an adapter is.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..sam import Sam
from ..sam.image_encoder import Attention
from .config import TrainConfig


class LowRankDelta(nn.Module):
    """The parametrisation W ↦ W + scale · B·A of a Linear weight (out x in)."""

    def __init__(
        self, out_features: int, in_features: int, rank: int, alpha: float, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.lora_a = nn.Parameter(torch.empty(rank, in_features))
        self.lora_b = nn.Parameter(torch.zeros(out_features, rank))
        # As nn.Linear initialises its weight, from the round's seed (a rerun is the same round).
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5), generator=generator)
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_b @ self.lora_a).to(weight.dtype)


def prepare_encoder(model: Sam, config: TrainConfig) -> list[nn.Parameter]:
    """Freeze or unfreeze the encoder for `config.encoder_mode` (adding the LoRA adapters) and
    return the encoder parameters to train (none when frozen)."""
    encoder = model.image_encoder
    encoder.requires_grad_(False)
    if config.encoder_mode == "full":
        encoder.requires_grad_(True)
    elif config.encoder_mode == "last_k":
        blocks = encoder.blocks
        if config.encoder_last_k > len(blocks):
            raise ValueError(f"encoder_last_k {config.encoder_last_k} exceeds the encoder's {len(blocks)} blocks")
        for block in list(blocks)[-config.encoder_last_k :]:
            block.requires_grad_(True)
        encoder.neck.requires_grad_(True)
    elif config.encoder_mode == "lora":
        generator = torch.Generator().manual_seed(config.seed)
        for attention in (m for m in encoder.modules() if isinstance(m, Attention)):
            for linear in (attention.qkv, attention.proj):
                delta = LowRankDelta(
                    linear.out_features, linear.in_features, config.lora_rank, config.lora_alpha, generator
                )
                parametrize.register_parametrization(linear, "weight", delta.to(linear.weight.device))
    return [p for p in encoder.parameters() if p.requires_grad]


def finish_encoder(model: Sam) -> None:
    """Merge LoRA adapters into the weights (if any) and make every encoder weight trainable again
    (the module's default), leaving a plain model."""
    for module in model.image_encoder.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    model.image_encoder.requires_grad_(True)
    model.image_encoder.checkpointing = False
