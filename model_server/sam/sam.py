"""The `Sam` module: image encoder, prompt encoder and mask decoder, plus the pixel statistics.

Only a container: the stateful work (set an image once, prompt many times) is in
`model_server.predictor`. Attribute names match the official checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

from ..transforms import normalize_and_pad
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    mask_threshold: float = 0.0
    pixel_mean: torch.Tensor  # buffers, declared for the type checker (nn.Module types attributes loosely)
    pixel_std: torch.Tensor

    def __init__(self, image_encoder: ImageEncoderViT, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder):
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        # Not in the checkpoints (non-persistent), so official files load strictly.
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.image_encoder.pos_embed.dtype

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Bx3xhxw RGB pixel values 0–255 (resized, longest side ≤ 1024) → Bx3x1024x1024 encoder input."""
        images = images.to(self.pixel_mean.dtype)
        return normalize_and_pad(images, self.pixel_mean, self.pixel_std, self.image_encoder.img_size)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Bx3xhxw resized RGB pixel values → Bx256x64x64 image embeddings."""
        return self.image_encoder(self.preprocess(images).to(self.dtype))
