"""SA-1B export: one JSON per image, as the dataset ships.

``sa1b/<image id>.json``: ``{"image": {image_id, file_name, width, height}, "annotations": [{id,
segmentation: COCO RLE with str counts, bbox XYWH, area, predicted_iou, stability_score, point_coords
[[x, y]], crop_box XYWH}]}``, then (``include_images``) ``images/<name>`` next to it. Masks drawn by
people (manual, or a review's correction) have no predicted IoU, stability, point or crop: null.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from backend.exchange.formats.common import ExportOptions, Fidelity
from backend.exchange.source import ExportImage, image_info
from backend.tables import Mask

if TYPE_CHECKING:
    from backend.exchange.archive import Archive

IMAGES_DIR = "images/"


def annotation(mask: Mask) -> dict[str, Any]:
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


def document(item: ExportImage) -> dict[str, Any]:
    return {"image": image_info(item), "annotations": [annotation(m) for m in item.masks]}


def export(
    archive: Archive, images: Iterable[ExportImage], options: ExportOptions, fidelity: Fidelity
) -> Iterator[None]:
    for item in images:
        archive.add_json(f"sa1b/{item.image.id}.json", document(item))
        archive.add_image(IMAGES_DIR, item)
        yield
