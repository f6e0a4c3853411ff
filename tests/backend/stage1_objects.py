"""DAVIS-345 objects as stage-1 masks for the detector tests (API and browser): which images, their
masks as COCO RLE, and a detector configuration small enough for the CPU."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from pycocotools import mask as mask_util

STAGE1, NEW = 6, 2  # images annotated in stage 1, and new images the detector fills
SMALL = {"epochs": 4, "width": 16, "depth": 1, "min_boxes": 5}


def davis_images(data_root: Path) -> list[tuple[str, list[str]]]:
    masks: dict[str, list[str]] = {}
    with open(data_root / "davis345" / "manifest.csv") as f:
        for row in csv.DictReader(f):
            masks.setdefault(row["image"], []).append(row["mask"])
    return [(name, masks[name]) for name in sorted(masks)[::40][: STAGE1 + NEW]]


def mask_rle(path: Path) -> dict:
    mask = np.asarray(PILImage.open(path)) > 0
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": encoded["counts"].decode("ascii")}
