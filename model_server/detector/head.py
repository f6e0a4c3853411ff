"""The network: a 1x1 projection and `depth` 3x3 convolutions over SAM's 256x64x64 image embedding."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import EMBEDDING_SHAPE


class DetectorHead(nn.Module):
    """256x64x64 embedding → (objectness logits Bx1x64x64, log ltrb distances Bx4x64x64)."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        groups = math.gcd(width, 8)
        layers: list[nn.Module] = [nn.Conv2d(EMBEDDING_SHAPE[0], width, 1), nn.GroupNorm(groups, width), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(groups, width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.objectness = nn.Conv2d(width, 1, 3, padding=1)
        self.box = nn.Conv2d(width, 4, 3, padding=1)
        assert self.objectness.bias is not None and self.box.bias is not None  # Conv2d's default bias=True
        nn.init.normal_(self.objectness.weight, std=0.01)
        nn.init.constant_(self.objectness.bias, -math.log(99.0))  # prior 1%: stable focal-loss start
        nn.init.normal_(self.box.weight, std=0.01)
        nn.init.constant_(self.box.bias, math.log(2.0))  # 2 cells to every side

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.body(embeddings)
        return self.objectness(x), self.box(x)
