"""Pure helpers over binary masks, run-length encodings and boxes for the automatic mask generator.

Masks leave the generator as run-length encodings as early as possible: a full-resolution mask
costs H·W bytes, its RLE a few hundred integers. The RLE here is the COCO one (column-major runs
that start with a run of zeros), either *uncompressed* (`{"size": [h, w], "counts": [int, ...]}`)
or *compressed* (`counts` a string, what SA-1B stores); pycocotools does the compression.

Boxes are XYXY with inclusive pixel coordinates (x1, y1 is the last mask pixel), the convention the
official generator uses for NMS and for its XYWH output; an empty mask has the box [0, 0, 0, 0].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as coco_mask
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def masks_to_rle(masks: torch.Tensor) -> list[dict[str, Any]]:
    """KxHxW bool masks → K uncompressed RLEs (column-major counts, first run is zeros)."""
    k, h, w = masks.shape
    if k == 0:
        return []
    flat = masks.transpose(1, 2).reshape(k, h * w)
    change = flat[:, 1:] != flat[:, :-1]
    rows, cols = torch.nonzero(change, as_tuple=True)
    ends = (cols + 1).numpy()
    per_mask = np.bincount(rows.numpy(), minlength=k)
    starts_one = flat[:, 0].numpy()
    out = []
    offset = 0
    for i in range(k):
        cuts = ends[offset : offset + per_mask[i]]
        offset += per_mask[i]
        bounds = np.concatenate(([0], cuts, [h * w]))
        counts = np.diff(bounds).tolist()
        if starts_one[i]:
            counts = [0, *counts]
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE → HxW bool mask."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(w, h).T


def rle_area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of an uncompressed RLE."""
    return int(sum(rle["counts"][1::2]))


def coco_encode(rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE → compressed COCO RLE with a str `counts` (JSON-serialisable)."""
    h, w = rle["size"]
    compressed = coco_mask.frPyObjects(rle, h, w)
    return {"size": [h, w], "counts": compressed["counts"].decode("ascii")}


def coco_decode(rle: dict[str, Any]) -> np.ndarray:
    """Compressed (or uncompressed) COCO RLE → HxW bool mask."""
    h, w = rle["size"]
    if isinstance(rle["counts"], list):
        return rle_to_mask(rle)
    counts = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
    return coco_mask.decode({"size": [h, w], "counts": counts}).astype(bool)


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


def remove_small_regions(mask: np.ndarray, area_threshold: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (mode "holes") or drop islands (mode "islands") smaller than `area_threshold` pixels.

    mask HxW bool in any frame → (mask HxW bool, whether it changed). Regions are 8-connected. For
    islands, when every island is small the largest one is kept. Work happens inside the mask's
    bounding box (plus a one-pixel ring of background) unless a background region that touches
    the box could itself be smaller than the threshold, in which case the whole mask is labelled.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(ys) == 0:
        return mask, False
    h, w = mask.shape
    y0, y1, x0, x1 = ys[0], ys[-1], xs[0], xs[-1]
    strips = [y0 * w, (h - 1 - y1) * w, x0 * h, (w - 1 - x1) * h]  # outside strips, full span
    if mode == "holes" and min((s for s in strips if s > 0), default=area_threshold) < area_threshold:
        y0, y1, x0, x1 = 0, h - 1, 0, w - 1
    top, left = max(y0 - 1, 0), max(x0 - 1, 0)
    window = mask[top : min(y1 + 2, h), left : min(x1 + 2, w)]
    working = ~window if mode == "holes" else window
    labels, n = ndimage.label(working, structure=_EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = sizes < area_threshold
    if mode == "holes":
        # Background touching the ring continues into an outside strip of at least the threshold:
        # never a hole. (Window sides on the image edge have no ring and are labelled as they are.)
        ring = [
            side
            for side, present in (
                (labels[0], y0 > 0),
                (labels[-1], y1 < h - 1),
                (labels[:, 0], x0 > 0),
                (labels[:, -1], x1 < w - 1),
            )
            if present
        ]
        if ring:
            border = np.concatenate(ring)
            small[np.unique(border[border > 0]) - 1] = False
    if not small.any():
        return mask, False
    if mode == "holes":
        filled = np.isin(labels, np.flatnonzero(small) + 1)
        new_window = window | filled
    else:
        keep = np.flatnonzero(~small) + 1
        if len(keep) == 0:
            keep = np.array([int(np.argmax(sizes)) + 1])
        new_window = np.isin(labels, keep)
    out = mask.copy()
    out[top : top + window.shape[0], left : left + window.shape[1]] = new_window
    return out, True
