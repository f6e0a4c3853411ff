"""What one exported image or mask looks like in SA-1B and in COCO instances.

SA-1B (one JSON per image, as the dataset ships): ``{"image": {image_id, file_name, width, height},
"annotations": [{id, segmentation: COCO RLE with str counts, bbox XYWH, area, predicted_iou,
stability_score, point_coords [[x, y]], crop_box XYWH}]}``. Masks drawn by people (manual, or a
review's correction) have no predicted IoU, stability, point or crop: those fields are null.

COCO instances: one category ``object`` (id 1), every mask an annotation with its RLE as
``segmentation`` and ``iscrowd`` 0; the SA-1B fields and the mask's ``source`` ride along as extra
keys (COCO readers ignore them; our import restores them).

Which masks: the project's masks that are not deleted (a rejected or corrected auto mask is deleted;
its correction is exported instead), all sources, in id order.

File names: an upload's name is the client's (cleaned for display, but it may be ``.png``, 255 ``ü``
or a name another image shares), so it never becomes an archive path. An image is exported as
``images/<image id>_<stem>.<ext>`` (`member_name`): unique by the id, the stem reduced to ASCII
letters, digits and ``-_.`` with no leading dot, the extension that of the stored bytes, the whole
path at most 100 bytes (a plain ustar name every tar extracts). The JSON's ``file_name`` is that name
(without ``images/``), as COCO and SA-1B readers expect, and ``original_file_name`` the uploaded one
(our COCO import matches images by it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.tables import Image, Mask

FORMATS = ("sa1b", "coco")
CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}
IMAGES_PER_QUERY = 100
IMAGES_DIR = "images/"
MAX_MEMBER_BYTES = 100  # a ustar name field: no PAX header needed, every tar reads it


@dataclass(frozen=True)
class ExportImage:
    image: Image
    name: str  # file name in the archive (under images/) and in the JSON: `member_name`
    masks: list[Mask]


def count_images(db: Session, project_id: int) -> int:
    return db.scalar(select(func.count()).select_from(Image).where(Image.project_id == project_id))


def member_name(image: Image) -> str:
    """The image's file name in the archive (under ``images/``): see the module docstring."""
    ext = PurePosixPath(image.storage_key).suffix
    prefix = f"{image.id}_"
    ascii_stem = unicodedata.normalize("NFKD", PurePosixPath(image.file_name).stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_stem).lstrip("._")
    budget = MAX_MEMBER_BYTES - len(IMAGES_DIR) - len(prefix) - len(ext)
    return f"{prefix}{stem[:budget].rstrip('.') or 'image'}{ext}"


def iter_images(db: Session, project_id: int) -> Iterator[ExportImage]:
    """The project's images with their live masks, `IMAGES_PER_QUERY` at a time (keyset pages)."""
    last_id = 0
    while True:
        images = db.scalars(
            select(Image)
            .where(Image.project_id == project_id, Image.id > last_id)
            .order_by(Image.id)
            .limit(IMAGES_PER_QUERY)
        ).all()
        if not images:
            return
        masks: dict[int, list[Mask]] = {image.id: [] for image in images}
        for mask in db.scalars(
            select(Mask).where(Mask.image_id.in_(list(masks)), Mask.deleted_at.is_(None)).order_by(Mask.id)
        ):
            masks[mask.image_id].append(mask)
        for image in images:
            yield ExportImage(image, member_name(image), masks[image.id])
        last_id = images[-1].id


def image_info(item: ExportImage) -> dict[str, Any]:
    return {
        "image_id": item.image.id,
        "file_name": item.name,
        "original_file_name": item.image.file_name,
        "width": item.image.width,
        "height": item.image.height,
    }


def sa1b_annotation(mask: Mask) -> dict[str, Any]:
    return {
        "id": mask.id,
        "segmentation": {"size": list(mask.rle["size"]), "counts": mask.rle["counts"]},
        "bbox": [float(v) for v in mask.bbox],
        "area": int(mask.area),
        "predicted_iou": mask.predicted_iou,
        "stability_score": mask.stability_score,
        "point_coords": mask.point_coords,
        "crop_box": mask.crop_box,
    }


def sa1b_document(item: ExportImage) -> dict[str, Any]:
    return {"image": image_info(item), "annotations": [sa1b_annotation(m) for m in item.masks]}


def coco_image(item: ExportImage) -> dict[str, Any]:
    return {
        "id": item.image.id,
        "file_name": item.name,
        "original_file_name": item.image.file_name,
        "width": item.image.width,
        "height": item.image.height,
    }


def coco_annotation(mask: Mask) -> dict[str, Any]:
    extra = sa1b_annotation(mask)
    return {
        "id": mask.id,
        "image_id": mask.image_id,
        "category_id": CATEGORY["id"],
        "segmentation": extra["segmentation"],
        "area": extra["area"],
        "bbox": extra["bbox"],
        "iscrowd": 0,
        "predicted_iou": mask.predicted_iou,
        "stability_score": mask.stability_score,
        "point_coords": mask.point_coords,
        "crop_box": mask.crop_box,
        "source": mask.source.value,
    }
