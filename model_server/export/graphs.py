"""The torch modules traced into the decoder graphs (model_server/export/contract.py), all thin
wrappers of the one `FoldedDecoder`, so every graph computes what the predictor computes.

Traced at batch 1 with every image row upscaled at once (``rows=None``): the traced graph keeps each
large tensor channels last (4096xC), so the browser's wasm kernels see no large transposes, and puts
the output pixels in raster order with one Gather on the 4x256x256 logits (a 7-d Transpose is slow).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..decoding import FoldedDecoder, ImageSide
from ..sam import Sam
from .contract import MODEL_SIZE, NUM_MASK_TOKENS

ALL_TOKENS = range(NUM_MASK_TOKENS)


class OneGraph(nn.Module):
    """Our contract in one graph: embedding + prompt -> low-res logits and IoUs of all four tokens."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.folded = FoldedDecoder(sam)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        folded = self.folded
        mask = folded.mask_prompt(mask_input, has_mask_input)
        side = folded.image_side(image_embeddings)
        return folded.decode(side, point_coords, point_labels, mask, ALL_TOKENS, rows=None)


class ImageGraph(nn.Module):
    """The split pair's per-image graph: embedding -> the decoder's `ImageSide`, once per image."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.folded = FoldedDecoder(sam)

    def forward(self, image_embeddings: torch.Tensor) -> ImageSide:
        return self.folded.image_side(image_embeddings)


class ClickGraph(nn.Module):
    """The split pair's per-click graph: the image side + prompt -> our contract's outputs."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.folded = FoldedDecoder(sam)

    def forward(
        self,
        image_tokens: torch.Tensor,
        l0_keys: torch.Tensor,
        l0_values: torch.Tensor,
        l0_image_queries: torch.Tensor,
        upscale_base: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        folded = self.folded
        side = ImageSide(image_tokens, l0_keys, l0_values, l0_image_queries, upscale_base)
        mask = folded.mask_prompt(mask_input, has_mask_input)
        return folded.decode(side, point_coords, point_labels, mask, ALL_TOKENS, rows=None)


class OfficialContract(nn.Module):
    """The official demo's graph: single-mask selection and full-resolution logits."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.decode = OneGraph(sam)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        masks, iou = self.decode(image_embeddings, point_coords, point_labels, mask_input, has_mask_input)
        # With two or fewer points (one click + padding) the prompt is ambiguous: pick the best
        # multimask token; otherwise the single-mask token 0 wins by a large margin.
        penalty = torch.zeros(1, NUM_MASK_TOKENS)
        penalty[0, 0] = 1000.0
        num_points = torch.ones_like(point_labels).sum(dim=1, keepdim=True)  # 1 x 1, dynamic
        best = torch.argmax(iou + (num_points - 2.5) * penalty, dim=1)
        low_res = masks[:, best]  # 1 x 1 x 256 x 256
        best_iou = iou[:, best]
        full = F.interpolate(low_res, (MODEL_SIZE, MODEL_SIZE), mode="bilinear", align_corners=False)
        size = orig_im_size.to(torch.float32)
        scaled = torch.floor(size * (MODEL_SIZE / size.max()) + 0.5).to(torch.int64)
        full = full[..., : scaled[0], : scaled[1]]
        full = F.interpolate(
            full,
            (orig_im_size[0].to(torch.int64), orig_im_size[1].to(torch.int64)),  # type: ignore[arg-type]  # traced sizes
            mode="bilinear",
            align_corners=False,
        )
        return full, best_iou, low_res
