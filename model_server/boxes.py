"""Boxes of masks and greedy non-maximum suppression, shared by the automatic generator and the detector.

Boxes are XYXY. Boxes of masks have inclusive pixel coordinates (x1, y1 is the last mask pixel),
the convention the official generator uses for NMS and for its XYWH output; an empty mask has the
box [0, 0, 0, 0]. IoU takes the area as (x1 − x0)·(y1 − y0) whatever the frame, as torchvision does,
so our NMS keeps exactly the boxes the official generator's torchvision NMS keeps.
"""

from __future__ import annotations

import numpy as np
import torch


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """KxHxW bool masks → Kx4 int64 XYXY boxes (inclusive), [0, 0, 0, 0] for an empty mask."""
    k, h, w = masks.shape
    if k == 0:
        return torch.zeros(0, 4, dtype=torch.int64)
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    top = rows.to(torch.uint8).argmax(dim=1)
    bottom = h - 1 - rows.flip(1).to(torch.uint8).argmax(dim=1)
    left = cols.to(torch.uint8).argmax(dim=1)
    right = w - 1 - cols.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack([left, top, right, bottom], dim=1).to(torch.int64)
    return boxes * rows.any(dim=1, keepdim=True)


def box_xyxy_to_xywh(box: list[int] | np.ndarray | torch.Tensor) -> list[int]:
    """One integer XYXY box → [x, y, width, height] as a plain list of ints."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def box_iou(boxes: torch.Tensor) -> torch.Tensor:
    """Nx4 float32 XYXY boxes → NxN IoU, with the area as (x1 − x0)·(y1 − y0)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    top_left = torch.max(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    return inter / (area[:, None] + area[None, :] - inter)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, categories: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy NMS within each category: indices (int64, best score first) of the boxes kept.

    boxes Nx4 XYXY (any frame), scores N, categories N (ints). A box is dropped when its IoU with a
    better-scored kept box of the same category exceeds `iou_threshold`; ties in score keep the
    earlier box (stable order).
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes[order].float()
    overlap = box_iou(boxes) > iou_threshold
    same = categories[order][:, None] == categories[order][None, :]
    suppress = (overlap & same).numpy()
    removed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= suppress[i]
    return order[torch.as_tensor(keep, dtype=torch.int64)]
