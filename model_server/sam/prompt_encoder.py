"""The prompt encoder: points and box corners → sparse 256-d tokens, a mask → dense embedding.

A point token is a random-Fourier encoding of its (x, y) position plus a learned embedding chosen
by its label: 0 background, 1 foreground, 2 box top-left, 3 box bottom-right; label −1 marks a
padding point, whose token is the "not a point" embedding alone. A box is therefore just two
points labelled 2 and 3, which keeps one code path for the predictor, batching and ONNX export.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from .common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (Tancik et al., Fourier features)."""

    positional_encoding_gaussian_matrix: torch.Tensor  # a buffer, declared for the type checker

    def __init__(self, num_pos_feats: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """coords ...x2, (x, y) normalised to [0, 1] → ...x(2·num_pos_feats), in the module's dtype.

        Computed in float32 whatever the module's dtype: in half precision a 1024-frame coordinate
        would be rounded to whole pixels and the phases (up to tens of radians) lose their meaning.
        """
        matrix = self.positional_encoding_gaussian_matrix
        coords = (2 * coords.float() - 1) @ matrix.float()
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).to(matrix.dtype)

    def grid(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an HxW grid: Cx H x W."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        points = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self.encode(points).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Sparse (points, box corners) and dense (low-res mask) prompt embeddings."""

    def __init__(
        self,
        embed_dim: int = 256,
        image_embedding_size: tuple[int, int] = (64, 64),
        input_image_size: tuple[int, int] = (1024, 1024),
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # Indexed by label: 0 background, 1 foreground, 2 box top-left, 3 box bottom-right.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: 1x256x64x64."""
        return self.pe_layer.grid(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """coords BxNx2 (x, y) in the 1024 model frame, labels BxN in {−1, 0, 1, 2, 3} → BxNx256."""
        # +0.5: a pixel index names the pixel's centre.
        h, w = self.input_image_size
        coords = coords.float()
        tokens = self.pe_layer.encode((coords + 0.5) * coords.new_tensor([1.0 / w, 1.0 / h]))
        table = torch.cat([cast(nn.Embedding, e).weight for e in self.point_embeddings], dim=0)
        tokens = tokens + table[labels.clamp(min=0).long()]
        padding = (labels == -1).unsqueeze(-1)
        return torch.where(padding, self.not_a_point_embed.weight.to(tokens.dtype), tokens)

    def embed_masks(self, masks: torch.Tensor | None) -> torch.Tensor:
        """Low-res mask logits Bx1x256x256 → Bx256x64x64; None → the "no mask" 1x256x1x1 (broadcasts)."""
        if masks is None:
            return self.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return self.mask_downscaling(masks)

    def forward(
        self, coords: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sparse BxNx256, dense Bx256x64x64 or 1x256x1x1); see `embed_points`, `embed_masks`."""
        return self.embed_points(coords, labels), self.embed_masks(masks)
