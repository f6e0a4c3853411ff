"""Helpers of the retraining tests: a project with real grabcut images and their masks saved
through the masks API, and an ML engineer member."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from pycocotools import mask as mask_utils

from tests.backend.jobs_helpers import GRABCUT_IMAGES, upload

# Tiny rounds: a few decoder steps on vit_t, two evaluation clicks; runs in seconds on 2 cores.
TINY = {"steps": 2, "batch_size": 1, "min_masks": 2, "held_out_fraction": 0.5, "max_clicks": 2}


def grabcut_rle(data_root: Path, image_name: str) -> dict:
    """The ground-truth mask of a grabcut image as COCO RLE with a str `counts` (what browsers send)."""
    stem = Path(image_name).stem
    mask = np.asarray(PILImage.open(data_root / "grabcut" / "masks" / f"{stem}__0.png").convert("L")) > 127
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def images_with_masks(
    client: TestClient, headers: dict[str, str], project_id: int, data_root: Path, count: int, tag: str = "m"
) -> tuple[list[int], list[int]]:
    """Upload `count` grabcut images and save each one's mask through the API; (image ids, mask ids)."""
    image_ids = upload(client, headers, project_id, data_root, count)
    mask_ids = [
        save_mask(client, headers, image_id, data_root, name, f"{tag}-{image_id}")
        for image_id, name in zip(image_ids, GRABCUT_IMAGES)
    ]
    return image_ids, mask_ids


def save_mask(
    client: TestClient, headers: dict[str, str], image_id: int, data_root: Path, name: str, client_id: str
) -> int:
    """Claim the image (saving needs the claim) and save the grabcut mask `name` on it."""
    assert client.post(f"/api/images/{image_id}/claim", headers=headers).status_code == 200
    response = client.post(
        f"/api/images/{image_id}/masks",
        headers=headers,
        json={"client_id": client_id, "rle": grabcut_rle(data_root, name), "seconds_spent": 12.0, "clicks": 3},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]
