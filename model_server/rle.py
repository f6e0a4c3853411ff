"""Run-length encodings of binary masks: how masks leave the model.

Masks leave the automatic generator and the proposals as run-length encodings as early as
possible: a full-resolution mask costs H·W bytes, its RLE a few hundred integers. The RLE here is
the COCO one (column-major runs that start with a run of zeros), either *uncompressed*
(`{"size": [h, w], "counts": [int, ...]}`) or *compressed* (`counts` a string, what SA-1B stores);
pycocotools does the compression. Boxes of masks are in `boxes`, small-region clean-up in `regions`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as coco_mask


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
