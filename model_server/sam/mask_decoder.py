"""The mask decoder: output tokens + prompt tokens through the two-way transformer → masks and IoU.

One IoU token and four mask tokens (token 0 for an unambiguous prompt, tokens 1–3 for whole, part
and subpart of an ambiguous one). The updated image embedding is upscaled 4× to 256×256 and each
mask token, through its own 3-layer MLP, gives the weights of a per-pixel dot product.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    def __init__(
        self,
        transformer_dim: int = 256,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = TwoWayTransformer(depth=2, embedding_dim=transformer_dim, num_heads=8, mlp_dim=2048)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode B prompts against one image.

        image_embeddings 1x256x64x64 (broadcast over the prompts), image_pe 1x256x64x64,
        sparse BxNx256, dense Bx256x64x64 or 1x256x1x1 →
        (low-res mask logits BxCx256x256, IoU predictions BxC), C = 3 if multimask_output else 1.
        """
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat(
            [
                output_tokens.unsqueeze(0).expand(batch, -1, -1).to(sparse_prompt_embeddings.dtype),
                sparse_prompt_embeddings,
            ],
            dim=1,
        )
        src = image_embeddings + dense_prompt_embeddings
        _, channels, h, w = src.shape
        hs, src = self.transformer(src, image_pe, tokens)
        src = src.expand(batch, -1, -1).transpose(1, 2).reshape(batch, channels, h, w)
        upscaled = self.output_upscaling(src)

        selected = range(1, self.num_mask_tokens) if multimask_output else range(0, 1)
        hyper_in = torch.stack([self.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in selected], dim=1)
        b, c, uh, uw = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, uh * uw)).reshape(b, -1, uh, uw)
        iou_pred = self.iou_prediction_head(hs[:, 0, :])[:, selected.start : selected.stop]
        return masks, iou_pred
