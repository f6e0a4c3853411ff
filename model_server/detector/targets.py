"""Geometry of the dense head: the 64x64 grid, the two frames, box coding and per-cell targets."""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import GRID, MODEL_SIZE, STRIDE

_MIN_DISTANCE = 1.0  # model-frame pixels: log-distance targets are clamped here (tiny boxes)
_MAX_LOG = math.log(2 * MODEL_SIZE / STRIDE)  # predicted log distances are clamped here (exp overflow)


def cell_centers() -> torch.Tensor:
    """(GRID*GRID)x2 float32 (x, y) centres of the grid cells in the model frame, row-major."""
    ys, xs = torch.meshgrid(
        torch.arange(GRID, dtype=torch.float32), torch.arange(GRID, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).add_(0.5).mul_(STRIDE)


def to_model_frame(
    boxes: np.ndarray | torch.Tensor, original_size: tuple[int, int], input_size: tuple[int, int]
) -> torch.Tensor:
    """Kx4 XYXY original-frame boxes → Kx4 float32 XYXY model-frame boxes (per-axis scale)."""
    sx, sy = input_size[1] / original_size[1], input_size[0] / original_size[0]
    return torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4) * torch.tensor([sx, sy, sx, sy])


def to_original_frame(boxes: torch.Tensor, original_size: tuple[int, int], input_size: tuple[int, int]) -> torch.Tensor:
    """Kx4 XYXY model-frame boxes → Kx4 float32 XYXY original-frame boxes, clipped to the image."""
    sx, sy = input_size[1] / original_size[1], input_size[0] / original_size[0]
    boxes = boxes.float() / torch.tensor([sx, sy, sx, sy])
    h, w = original_size
    return torch.stack(
        [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1
    )


def encode_ltrb(boxes: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Nx4 XYXY boxes and Nx2 (x, y) cell centres (model frame) → Nx4 log(distance / STRIDE) targets.

    Distances (left, top, right, bottom) from each centre to its box's edges, clamped below at
    1 model-frame pixel (a centre on or outside an edge of a tiny box).
    """
    distances = torch.cat([centers - boxes[:, :2], boxes[:, 2:] - centers], dim=1)
    return torch.log(distances.clamp(min=_MIN_DISTANCE) / STRIDE)


def decode_ltrb(encoded: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Nx4 log(distance / STRIDE) and Nx2 (x, y) centres (model frame) → Nx4 XYXY model-frame boxes."""
    distances = torch.exp(encoded.clamp(max=_MAX_LOG)) * STRIDE
    return torch.cat([centers - distances[:, :2], centers + distances[:, 2:]], dim=1)


def valid_cells(input_size: tuple[int, int]) -> torch.Tensor:
    """GRID*GRID bool: cells whose centre lies on the image (not on the 1024 frame's padding)."""
    centers = cell_centers()
    return (centers[:, 0] < input_size[1]) & (centers[:, 1] < input_size[0])


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise generalised IoU of Nx4 XYXY boxes `a` and `b` → N."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    inter = (torch.min(a[:, 2:], b[:, 2:]) - torch.max(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    iou = inter / union.clamp(min=1e-6)
    return iou - (hull - union) / hull.clamp(min=1e-6)


def assign_targets(boxes: torch.Tensor, input_size: tuple[int, int], center_ratio: float) -> dict[str, torch.Tensor]:
    """Per-cell training targets for Kx4 XYXY model-frame boxes of one image.

    Returns (each over the GRID*GRID cells, row-major): ``positive`` bool, ``valid`` bool (not
    padding), ``box`` Nx4 float32 (the assigned box, XYXY model frame; zeros where not positive),
    ``centerness`` float32 (soft objectness target; 0 where not positive).
    """
    centers = cell_centers()
    n = centers.shape[0]
    valid = valid_cells(input_size)
    positive = torch.zeros(n, dtype=torch.bool)
    assigned = torch.zeros(n, 4)
    centerness = torch.zeros(n)
    if boxes.shape[0] == 0:
        return {"positive": positive, "valid": valid, "box": assigned, "centerness": centerness}
    boxes = boxes.float()
    box_center = (boxes[:, :2] + boxes[:, 2:]) / 2  # Kx2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2
    reach = torch.maximum(half * center_ratio, torch.full_like(half, STRIDE / 2))  # at least the centre cell
    offset = (centers[:, None, :] - box_center[None]).abs()  # NxKx2
    inside = (offset <= reach[None]).all(dim=2)  # NxK
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cost = torch.where(inside, area[None].expand(n, -1), torch.full((n, boxes.shape[0]), float("inf")))
    best_cost, best = cost.min(dim=1)
    positive = torch.isfinite(best_cost) & valid
    assigned = boxes[best] * positive[:, None]
    distances = torch.cat([centers - assigned[:, :2], assigned[:, 2:] - centers], dim=1).clamp(min=0)
    lr, tb = distances[:, [0, 2]], distances[:, [1, 3]]
    ratio = (lr.min(dim=1).values / lr.max(dim=1).values.clamp(min=1e-6)) * (
        tb.min(dim=1).values / tb.max(dim=1).values.clamp(min=1e-6)
    )
    centerness = torch.where(positive, ratio.sqrt().clamp(min=0.1), torch.zeros(n))
    return {"positive": positive, "valid": valid, "box": assigned, "centerness": centerness}
