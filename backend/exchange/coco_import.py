"""Import of COCO instance masks into a project: all of the file or none of it.

Images are matched by ``file_name`` among the project's images (the images must be uploaded first).
Segmentations may be RLE (compressed str or uncompressed list counts) or polygons (lists of
x, y, ... in image pixels). Everything is checked before anything is written; the first problems
(up to `MAX_ERRORS`) are reported together, each naming its annotation, and nothing is stored.

The masks are stored as `source` manual (or the ``source`` key our own COCO export writes), in the
project's current stage, with ``predicted_iou`` / ``stability_score`` / ``point_coords`` /
``crop_box`` when the annotation carries them. Re-importing the same file adds nothing: each mask's
``client_id`` is derived from (project, file digest, annotation id).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_util
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.annotation.rle import InvalidRle, check_rle
from backend.models import Image, Mask, MaskSource, Project, User

MAX_ERRORS = 10


class CocoImportError(ValueError):
    """The file cannot be imported; `errors` lists why (each naming its annotation)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ImportResult:
    imported: int
    already_present: int
    images: int  # project images that received masks


def _number_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)


def _polygons_to_rle(segmentation: list[Any], height: int, width: int) -> dict[str, Any]:
    if not segmentation or not all(_number_list(p) and len(p) >= 6 and len(p) % 2 == 0 for p in segmentation):
        raise InvalidRle("polygons must be lists of at least 3 x, y pairs")
    coords = np.asarray([v for p in segmentation for v in p], dtype=np.float64)
    if not np.isfinite(coords).all():
        raise InvalidRle("polygon coordinates must be finite")
    merged = mask_util.merge(mask_util.frPyObjects([list(map(float, p)) for p in segmentation], height, width))
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}


def _optional_float(annotation: dict[str, Any], key: str) -> float | None:
    value = annotation.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _optional_list(annotation: dict[str, Any], key: str) -> list[Any] | None:
    value = annotation.get(key)
    return value if isinstance(value, list) else None


def import_coco(db: Session, project: Project, user: User, body: bytes) -> ImportResult:
    """Check and store the COCO instances JSON `body` (committed in one transaction).

    Raises:
        CocoImportError: the file is not COCO instances JSON, or an annotation names an image that is
            not in the project or has an invalid segmentation.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CocoImportError([f"not a JSON document: {error}"]) from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list) \
            or not isinstance(document.get("annotations"), list):
        raise CocoImportError(["expected a COCO instances object with 'images' and 'annotations' lists"])
    digest = hashlib.sha256(body).hexdigest()[:24]

    by_name: dict[str, list[Image]] = {}
    for image in db.scalars(select(Image).where(Image.project_id == project.id)):
        by_name.setdefault(image.file_name, []).append(image)
    coco_images: dict[Any, dict[str, Any]] = {}
    for entry in document["images"]:
        if isinstance(entry, dict) and "id" in entry:
            coco_images[entry["id"]] = entry

    errors: list[str] = []
    masks: list[Mask] = []
    for position, annotation in enumerate(document["annotations"]):
        if len(errors) >= MAX_ERRORS:
            break
        if not isinstance(annotation, dict):
            errors.append(f"annotation #{position}: not an object")
            continue
        label = f"annotation {annotation.get('id', f'#{position}')!r}"
        entry = coco_images.get(annotation.get("image_id"))
        if entry is None:
            errors.append(f"{label}: image_id {annotation.get('image_id')!r} is not in the file's images")
            continue
        candidates = by_name.get(entry.get("file_name"), [])
        if len(candidates) != 1:
            why = "is not an image of this project" if not candidates else "matches several images of this project"
            errors.append(f"{label}: image file_name {entry.get('file_name')!r} {why}")
            continue
        image = candidates[0]
        segmentation = annotation.get("segmentation")
        try:
            if isinstance(segmentation, dict):
                checked = check_rle(segmentation, image.height, image.width)
            elif isinstance(segmentation, list):
                checked = check_rle(_polygons_to_rle(segmentation, image.height, image.width), image.height, image.width)
            else:
                raise InvalidRle("segmentation must be an RLE object or a list of polygons")
        except InvalidRle as error:
            errors.append(f"{label} (image {entry.get('file_name')!r}): invalid segmentation: {error}")
            continue
        source = annotation.get("source")
        masks.append(Mask(
            client_id=f"coco-{project.id}-{digest}-{annotation.get('id', f'#{position}')}"[:64],
            image_id=image.id, project_id=project.id, rle=checked.rle, bbox=checked.bbox, area=checked.area,
            source=MaskSource(source) if source in MaskSource._value2member_map_ else MaskSource.manual,
            stage=project.stage, author_id=user.id,
            predicted_iou=_optional_float(annotation, "predicted_iou"),
            stability_score=_optional_float(annotation, "stability_score"),
            point_coords=_optional_list(annotation, "point_coords"), crop_box=_optional_list(annotation, "crop_box"),
            prompts={"import": {"format": "coco", "annotation_id": annotation.get("id")}},
        ))
    if errors:
        raise CocoImportError(errors)
    ids = [m.client_id for m in masks]
    if len(set(ids)) != len(ids):
        raise CocoImportError(["annotation ids are not unique"])
    present = set()
    for start in range(0, len(ids), 500):
        present |= set(db.scalars(select(Mask.client_id).where(Mask.client_id.in_(ids[start : start + 500]))))
    new = [m for m in masks if m.client_id not in present]
    db.add_all(new)
    db.commit()
    return ImportResult(imported=len(new), already_present=len(present), images=len({m.image_id for m in new}))
