"""Geometry between the original image frame and SAM's 1024×1024 model frame.

The model sees the image with its longest side resized to 1024 (new side = int(side·scale + 0.5),
at least 1, PIL bilinear), normalised and zero-padded at the bottom and right. Points and boxes are
scaled per axis by new/old side; masks come back by upsampling the 256×256 logits to 1024², cropping the
padding and resizing to the original size. These are the official model's conventions, which the
trained weights expect. Pure functions, no state.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

MODEL_SIZE = 1024


def preprocess_shape(height: int, width: int, long_side: int = MODEL_SIZE) -> tuple[int, int]:
    """(height, width) of the image once its longest side is `long_side`; never below 1 pixel (a
    3000x1 strip rounds its short side to 0, which no resize can produce)."""
    scale = long_side / max(height, width)
    return max(int(height * scale + 0.5), 1), max(int(width * scale + 0.5), 1)


def resize_longest_side(image: np.ndarray, long_side: int = MODEL_SIZE) -> np.ndarray:
    """HxWx3 uint8 RGB → h'xw'x3 uint8, longest side `long_side`, PIL bilinear."""
    new_h, new_w = preprocess_shape(image.shape[0], image.shape[1], long_side)
    return np.array(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))


def normalize_and_pad(
    images: torch.Tensor, pixel_mean: torch.Tensor, pixel_std: torch.Tensor, size: int = MODEL_SIZE
) -> torch.Tensor:
    """Bx3xhxw pixel values 0–255 (h, w ≤ size) → Bx3x size x size, normalised, zero-padded bottom/right."""
    x = (images - pixel_mean.reshape(1, -1, 1, 1)) / pixel_std.reshape(1, -1, 1, 1)
    h, w = x.shape[-2:]
    return F.pad(x, (0, size - w, 0, size - h))


def _axis_scale(original_size: tuple[int, int], long_side: int) -> tuple[float, float]:
    old_h, old_w = original_size
    new_h, new_w = preprocess_shape(old_h, old_w, long_side)
    return new_w / old_w, new_h / old_h


def apply_coords(
    coords: np.ndarray | torch.Tensor, original_size: tuple[int, int], long_side: int = MODEL_SIZE
) -> np.ndarray | torch.Tensor:
    """...x2 (x, y) points in the original frame (H, W = original_size) → the model frame.

    A numpy input gives float64 numpy, a tensor gives a tensor of its own (floating) dtype.
    """
    sx, sy = _axis_scale(original_size, long_side)
    if isinstance(coords, torch.Tensor):
        coords = coords if coords.is_floating_point() else coords.float()
        return coords * coords.new_tensor([sx, sy])
    return np.asarray(coords, dtype=np.float64) * np.array([sx, sy])


def apply_boxes(
    boxes: np.ndarray | torch.Tensor, original_size: tuple[int, int], long_side: int = MODEL_SIZE
) -> np.ndarray | torch.Tensor:
    """...x4 XYXY boxes in the original frame → the model frame."""
    corners = apply_coords(boxes.reshape(-1, 2, 2), original_size, long_side)
    return corners.reshape(boxes.shape)


def postprocess_masks(
    masks: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    model_size: int = MODEL_SIZE,
) -> torch.Tensor:
    """BxCx256x256 low-res logits → BxCxHxW logits in the original frame (H, W = original_size).

    input_size is the resized image's (h, w) inside the padded model frame.
    """
    masks = F.interpolate(masks, (model_size, model_size), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)
