"""The official `segment-anything` package as a test-only oracle.

Its modules import torchvision, which cannot be installed beside the CPU torch build used here.
`install_torchvision_stub()` registers a minimal `torchvision` with exactly the functions the
package uses (PIL resize, to_pil_image, box NMS), implemented with Pillow and torch so that the
reference computes what real torchvision would.

The stub exists only so that the official package imports and runs (its automatic generator calls
torchvision's `batched_nms`); it is not an oracle for our own code. Our NMS is checked against an
independent brute-force greedy NMS over pycocotools IoUs (`test_amg.py::test_nms_matches_brute_force_greedy_nms`),
since the stub's NMS is written the way ours is and would share its mistakes.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import torch
from PIL import Image


def _to_pil_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(array))


def _resize(image: Image.Image, size: tuple[int, int] | list[int]) -> Image.Image:
    height, width = size
    return image.resize((width, height), Image.BILINEAR)


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    return inter / (_box_area(a)[:, None] + _box_area(b)[None, :] - inter)


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    order = torch.argsort(scores, descending=True, stable=True)
    iou = _box_iou(boxes[order], boxes[order])
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= iou[i] > iou_threshold
    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long)


def _batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    # Offsetting each category by more than the extent of all boxes keeps categories apart.
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return _nms(boxes + offsets[:, None], scores, iou_threshold)


def install_torchvision_stub() -> None:
    """Register the stub modules unless a real torchvision is importable."""
    if "torchvision" in sys.modules:
        return
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.resize = _resize
    functional.to_pil_image = _to_pil_image
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    boxes.batched_nms = _batched_nms
    boxes.box_area = _box_area
    boxes.nms = _nms
    ops.boxes = boxes
    ops.batched_nms = _batched_nms
    ops.nms = _nms
    tv.transforms = transforms
    transforms.functional = functional
    tv.ops = ops
    sys.modules.update(
        {
            "torchvision": tv,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
            "torchvision.ops": ops,
            "torchvision.ops.boxes": boxes,
        }
    )


def official():
    """The `segment_anything` package, importable thanks to the stub."""
    install_torchvision_stub()
    import segment_anything

    return segment_anything
