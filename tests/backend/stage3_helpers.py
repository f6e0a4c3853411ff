"""Helpers shared by the fully-automatic-stage tests (auto, review, exchange)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from pycocotools import mask as mask_util
from sqlalchemy.orm import Session

from backend.auto.service import ReviewSampling, StoredImage, store_image_masks
from backend.tables import Image


def rle_of(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE (str counts) of an HxW bool mask."""
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def decode(rle: dict[str, Any]) -> np.ndarray:
    """HxW uint8 mask of a COCO RLE with str counts."""
    return mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})


def box_mask(height: int, width: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def ground_truth_mask(data_root: Path, file_name: str) -> np.ndarray:
    """The real object mask of a grabcut image (HxW bool)."""
    stem = Path(file_name).stem
    return np.asarray(PILImage.open(data_root / "grabcut" / "masks" / f"{stem}__0.png")) > 127


def record(mask: np.ndarray, predicted_iou: float = 0.9, stability: float = 0.96) -> dict[str, Any]:
    """A generator record (coco_rle output mode) for a bool mask, as the AMG returns it."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    return {
        "segmentation": rle_of(mask),
        "area": int(mask.sum()),
        "bbox": [0, 0, 0, 0],
        "predicted_iou": predicted_iou,
        "stability_score": stability,
        "point_coords": [[float(xs.mean()), float(ys.mean())]],
        "crop_box": [0, 0, w, h],
    }


def add_auto_masks(
    db: Session,
    image: Image,
    masks: list[np.ndarray],
    fraction: float = 1.0,
    seed: int = 0,
    max_mask_fraction: float = 0.95,
    model_version_id: int | None = None,
) -> StoredImage:
    """Store hand-built auto masks for `image` the way the auto task does."""
    provenance = {"model_version_id": model_version_id} if model_version_id is not None else None
    return store_image_masks(
        db, image, [record(m) for m in masks], ReviewSampling(fraction, seed), max_mask_fraction, provenance
    )
