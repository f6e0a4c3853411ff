"""The automatic generator's masks: the set kept so far, its hole/island clean-up, and its records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..boxes import batched_nms, box_xyxy_to_xywh, masks_to_boxes
from ..regions import remove_small_regions
from ..rle import coco_encode, masks_to_rle, rle_area, rle_to_mask

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


@dataclass
class MaskSet:
    """Masks kept so far, as parallel per-mask fields (RLEs in the original frame)."""

    rles: list[dict[str, Any]] = field(default_factory=list)
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))  # Kx4 XYXY
    iou: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # K predicted IoU
    stability: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # K
    points: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.float64))  # Kx2 (x, y)
    crop_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))  # Kx4 XYXY

    TENSORS = ("boxes", "iou", "stability", "points", "crop_boxes")

    def __len__(self) -> int:
        return len(self.rles)

    def take(self, index: torch.Tensor) -> MaskSet:
        """The masks at `index` (int64 indices or a bool mask), in that order."""
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        return MaskSet(
            [self.rles[i] for i in index.tolist()],
            self.boxes[index],
            self.iou[index],
            self.stability[index],
            self.points[index],
            self.crop_boxes[index],
        )

    @staticmethod
    def concat(parts: list[MaskSet]) -> MaskSet:
        if not parts:
            return MaskSet()
        return MaskSet(
            [r for p in parts for r in p.rles],
            *(torch.cat([getattr(p, name) for p in parts]) for name in MaskSet.TENSORS),
        )


def clean_regions(masks: MaskSet, min_area: int, nms_thresh: float) -> MaskSet:
    """Fill holes and drop islands smaller than `min_area` pixels, then NMS at `nms_thresh` again,
    preferring untouched masks."""
    new_rles, new_boxes, unchanged = [], [], []
    for rle in masks.rles:
        mask = rle_to_mask(rle)
        mask, holes = remove_small_regions(mask, min_area, "holes")
        mask, islands = remove_small_regions(mask, min_area, "islands")
        changed = holes or islands
        mask_t = torch.from_numpy(mask)[None]
        new_boxes.append(masks_to_boxes(mask_t)[0])
        new_rles.append(masks_to_rle(mask_t)[0] if changed else rle)
        unchanged.append(0.0 if changed else 1.0)
    boxes = torch.stack(new_boxes)
    keep = batched_nms(boxes.float(), torch.tensor(unchanged), torch.zeros(len(boxes)), nms_thresh)
    cleaned = MaskSet(new_rles, boxes, masks.iou, masks.stability, masks.points, masks.crop_boxes)
    return cleaned.take(keep)


def record(masks: MaskSet, i: int, output_mode: str) -> dict[str, Any]:
    """Mask `i` as an SA-1B-style record, its segmentation in `output_mode` (one of OUTPUT_MODES)."""
    rle = masks.rles[i]
    segmentation: Any
    if output_mode == "binary_mask":
        segmentation = rle_to_mask(rle)
    elif output_mode == "coco_rle":
        segmentation = coco_encode(rle)
    else:
        segmentation = rle
    return {
        "segmentation": segmentation,
        "area": rle_area(rle),
        "bbox": box_xyxy_to_xywh(masks.boxes[i]),
        "predicted_iou": float(masks.iou[i]),
        "point_coords": [masks.points[i].tolist()],
        "stability_score": float(masks.stability[i]),
        "crop_box": box_xyxy_to_xywh(masks.crop_boxes[i]),
    }
