"""What one exported image or mask looks like in SA-1B and in COCO instances.

SA-1B (one JSON per image, as the dataset ships): ``{"image": {image_id, file_name, width, height},
"annotations": [{id, segmentation: COCO RLE with str counts, bbox XYWH, area, predicted_iou,
stability_score, point_coords [[x, y]], crop_box XYWH}]}``. Masks drawn by people (manual, or a
review's correction) have no predicted IoU, stability, point or crop: those fields are null.

COCO instances: one category ``object`` (id 1), every mask an annotation with its RLE as
``segmentation`` and ``iscrowd`` 0; the SA-1B fields and the mask's ``source`` ride along as extra
keys (COCO readers ignore them; our import restores them).

Which masks: the project's masks that are not deleted (a rejected or corrected auto mask is deleted;
its correction is exported instead), all sources, in id order. File names: an image is exported as
``images/<file name>``, or ``images/<image id>_<file name>`` if two images of the project share a
file name; the JSON's ``file_name`` is that archive name (without ``images/``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.models import Image, Mask

FORMATS = ("sa1b", "coco")
CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}
IMAGES_PER_QUERY = 100


@dataclass(frozen=True)
class ExportImage:
    image: Image
    name: str  # file name in the archive (under images/) and in the JSON
    masks: list[Mask]


def count_images(db: Session, project_id: int) -> int:
    return db.scalar(select(func.count()).select_from(Image).where(Image.project_id == project_id))


def iter_images(db: Session, project_id: int) -> Iterator[ExportImage]:
    """The project's images with their live masks, `IMAGES_PER_QUERY` at a time (keyset pages)."""
    duplicated = set(db.scalars(
        select(Image.file_name).where(Image.project_id == project_id).group_by(Image.file_name)
        .having(func.count() > 1)
    ))
    last_id = 0
    while True:
        images = db.scalars(select(Image).where(Image.project_id == project_id, Image.id > last_id)
                            .order_by(Image.id).limit(IMAGES_PER_QUERY)).all()
        if not images:
            return
        masks: dict[int, list[Mask]] = {image.id: [] for image in images}
        for mask in db.scalars(select(Mask).where(Mask.image_id.in_(list(masks)), Mask.deleted_at.is_(None))
                               .order_by(Mask.id)):
            masks[mask.image_id].append(mask)
        for image in images:
            base = PurePosixPath(image.file_name).name or f"{image.id}"
            name = f"{image.id}_{base}" if image.file_name in duplicated else base
            yield ExportImage(image, name, masks[image.id])
        last_id = images[-1].id


def image_info(item: ExportImage) -> dict[str, Any]:
    return {"image_id": item.image.id, "file_name": item.name, "width": item.image.width,
            "height": item.image.height}


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
    return {"id": item.image.id, "file_name": item.name, "width": item.image.width, "height": item.image.height}


def coco_annotation(mask: Mask) -> dict[str, Any]:
    extra = sa1b_annotation(mask)
    return {
        "id": mask.id, "image_id": mask.image_id, "category_id": CATEGORY["id"],
        "segmentation": extra["segmentation"], "area": extra["area"], "bbox": extra["bbox"], "iscrowd": 0,
        "predicted_iou": mask.predicted_iou, "stability_score": mask.stability_score,
        "point_coords": mask.point_coords, "crop_box": mask.crop_box, "source": mask.source.value,
    }
