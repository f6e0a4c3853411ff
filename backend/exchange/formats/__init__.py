"""The formats of exports and imports, one module each, and the one dispatch over them.

| format          | export                                   | import                                  |
|-----------------|------------------------------------------|-----------------------------------------|
| `sa1b`          | SA-1B JSON per image (exact RLE)         |                                         |
| `coco`          | COCO instances, RLE (exact)              | COCO instances, RLE or polygons         |
| `coco_polygons` | COCO instances, polygons (IoU reported)  |                                         |
| `yolo`          | Ultralytics segmentation (IoU reported)  | Ultralytics segmentation (and boxes)    |
| `voc`           | Pascal VOC segmentation PNGs + XML       |                                         |
| `png`           | 16-bit instance-id PNG per image         | instance-id PNGs (8/16-bit, palette)    |
| `cvat`          |                                          | CVAT for images 1.1 XML                 |
| `label_studio`  |                                          | Label Studio JSON (brush, polygons, boxes) |
| `labelme`       |                                          | LabelMe JSON                            |
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from backend.exchange.formats import coco, cvat, label_studio, labelme, png_masks, sa1b, voc, yolo
from backend.exchange.formats.common import Exporter, ExportOptions, Fidelity
from backend.exchange.importing import Parsed

__all__ = ["EXPORTERS", "IMPORTERS", "ExportOptions", "Fidelity", "detect"]

EXPORTERS: dict[str, Exporter] = {
    "sa1b": sa1b.export,
    "coco": coco.export_rle,
    "coco_polygons": coco.export_polygons,
    "yolo": yolo.export,
    "voc": voc.export,
    "png": png_masks.export,
}
POLYGON_FORMATS = ("coco_polygons", "yolo")

IMPORTERS: dict[str, Callable[[Mapping[str, bytes]], Parsed]] = {
    "coco": coco.parse,
    "yolo": yolo.parse,
    "cvat": cvat.parse,
    "label_studio": label_studio.parse,
    "labelme": labelme.parse,
    "png": png_masks.parse,
}


def detect(files: Mapping[str, bytes]) -> str | None:
    """The import format of an upload's files, from their names and first bytes; None if unknown."""
    names = list(files)
    if yolo.label_files(files) and any(n.endswith(".txt") for n in names):
        return "yolo"
    for name, data in files.items():
        if name.endswith(".xml") or len(files) == 1:
            if cvat.looks_like(data):
                return "cvat"
    documents = [n for n in names if n.endswith(".json") or len(files) == 1]
    for name in documents:
        try:
            document = json.loads(files[name])
        except (ValueError, RecursionError):
            continue
        for fmt, module in (("coco", coco), ("label_studio", label_studio), ("labelme", labelme)):
            if module.looks_like(document):
                return fmt
    if png_masks.mask_files(files):
        return "png"
    return None
