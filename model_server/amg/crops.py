"""Where the automatic generator prompts: the point grid, the crop boxes, and the crop-edge test."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import torch

EDGE_TOLERANCE = 20.0  # pixels: a box this close to a crop edge (not an image edge) is cut off


def build_point_grid(n_per_side: int) -> np.ndarray:
    """n²x2 float64 (x, y) points, evenly spaced cell centres of the unit square, row by row."""
    side = (np.arange(n_per_side) + 0.5) / n_per_side
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def generate_crop_boxes(
    image_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """XYXY crop boxes (original frame) and their layer: the whole image, then (2^i)² overlapping
    crops for layer i = 1..n_layers. Neighbouring crops of layer i overlap by
    overlap_ratio · short side · 2 / 2^i pixels."""
    h, w = image_size
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * min(h, w) * 2 / per_side)
        crop_w = math.ceil((overlap * (per_side - 1) + w) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + h) / per_side)
        x_starts = [int((crop_w - overlap) * i) for i in range(per_side)]
        y_starts = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(x_starts, y_starts):
            boxes.append([x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)])
            layers.append(layer)
    return boxes, layers


def near_crop_edge(boxes: torch.Tensor, crop_box: list[int], image_size: tuple[int, int]) -> torch.Tensor:
    """Kx4 XYXY boxes (crop frame) → K bool: a side lies within EDGE_TOLERANCE of a crop edge that
    is not also an image edge (the object probably continues outside the crop)."""
    x0, y0, _, _ = crop_box
    h, w = image_size
    uncropped = (boxes + torch.tensor([x0, y0, x0, y0])).float()
    crop = torch.tensor(crop_box, dtype=torch.float32)
    whole = torch.tensor([0, 0, w, h], dtype=torch.float32)
    near_crop = (uncropped - crop).abs() <= EDGE_TOLERANCE
    near_image = (uncropped - whole).abs() <= EDGE_TOLERANCE
    return (near_crop & ~near_image).any(dim=1)
