"""YOLO segmentation (the Ultralytics dataset layout): export and import.

Export: ``data.yaml`` (``train``/``val`` image folders relative to it, ``names`` {0: object}),
``images/train/<name>`` (``include_images``) and ``labels/train/<stem>.txt`` for every image, one
line per mask: ``0 x1 y1 x2 y2 ...``, the outline normalised by the image's width and height. A
mask is one line, so its parts and holes are joined by zero-width cuts (`polygons`), as Ultralytics'
own COCO converter joins an object's segments; the IoU each line keeps is reported per mask.

Import: every ``*.txt`` under a ``labels`` folder (or at the top of the upload), named by the image's
stem; each line ``<class> x1 y1 ...`` (at least three points; a 5-number line is a box ``<class> cx cy
w h``) in fractions of the image, the class named by ``names`` of a ``data.yaml`` when there is one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from backend.exchange import polygons as polygon_tools
from backend.exchange.formats.common import CATEGORY, ExportOptions, Fidelity
from backend.exchange.importing import Found, Parsed, Polygons
from backend.exchange.source import ExportImage, coco_rle, pixels

if TYPE_CHECKING:
    from backend.exchange.archive import Archive

MAX_LINE_NUMBERS = 2 * polygon_tools.MAX_IMPORT_POINTS + 1
FRACTION_SLACK = 0.01  # coordinates may lie this far outside [0, 1] (rounding of other tools)


def data_yaml() -> bytes:
    document = {"train": "images/train", "val": "images/train", "names": {0: CATEGORY["name"]}}
    return ("# Ultralytics YOLO segmentation dataset written by the data engine\n" + yaml.safe_dump(document)).encode()


def export(
    archive: Archive, images: Iterable[ExportImage], options: ExportOptions, fidelity: Fidelity
) -> Iterator[None]:
    tolerance = options.polygon_tolerance
    for item in images:
        lines = []
        width, height = item.image.width, item.image.height
        for mask in item.masks:
            ring = polygon_tools.mask_to_polygons(pixels(mask), tolerance, single=True)
            iou = polygon_tools.polygon_iou(coco_rle(mask), ring) if ring else 0.0
            fidelity.record(f"polygon IoU (tolerance {tolerance} px)", mask.id, iou)
            if ring:
                xy = ring[0]
                numbers = [f"{v / (width if i % 2 == 0 else height):.6f}" for i, v in enumerate(xy)]
                lines.append("0 " + " ".join(numbers))
        archive.add_bytes(f"labels/train/{item.stem}.txt", "".join(line + "\n" for line in lines).encode())
        archive.add_image("images/train/", item)
        yield
    archive.add_bytes("data.yaml", data_yaml())


def _names(files: Mapping[str, bytes]) -> dict[int, str]:
    for name, data in files.items():
        if PurePosixPath(name).name in ("data.yaml", "dataset.yaml"):
            try:
                document = yaml.safe_load(data.decode("utf-8", "replace"))
            except yaml.YAMLError:
                return {}
            names: Any = document.get("names") if isinstance(document, dict) else None
            if isinstance(names, list):
                return {i: str(n)[:200] for i, n in enumerate(names)}
            if isinstance(names, dict):
                return {int(k): str(v)[:200] for k, v in names.items() if isinstance(k, int)}
    return {}


def label_files(files: Mapping[str, bytes]) -> list[str]:
    return [
        name
        for name in files
        if name.endswith(".txt")
        and ("labels" in PurePosixPath(name).parts[:-1] or len(PurePosixPath(name).parts) == 1)
        and PurePosixPath(name).name not in ("classes.txt",)
    ]


def parse(files: Mapping[str, bytes]) -> Parsed:
    parsed = Parsed()
    names = _names(files)
    for file in label_files(files):
        stem = PurePosixPath(file).stem
        try:
            text = files[file].decode("utf-8")
        except UnicodeDecodeError:
            parsed.problem(file, "", "is not UTF-8 text")
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            where = f"line {number}"
            fields = line.split()
            if not fields:
                continue
            if len(fields) > MAX_LINE_NUMBERS:
                parsed.problem(file, where, f"has more than {polygon_tools.MAX_IMPORT_POINTS} points")
                continue
            try:
                klass, values = int(fields[0]), [float(v) for v in fields[1:]]
            except ValueError:
                parsed.problem(file, where, "must be '<class> x1 y1 x2 y2 ...' (an integer, then numbers)")
                continue
            if not all(math.isfinite(v) and -FRACTION_SLACK <= v <= 1 + FRACTION_SLACK for v in values):
                parsed.problem(file, where, "coordinates must be fractions of the image, within [0, 1]")
                continue
            if len(values) == 4:  # a detection box: cx cy w h
                cx, cy, w, h = values
                values = [
                    cx - w / 2,
                    cy - h / 2,
                    cx + w / 2,
                    cy - h / 2,
                    cx + w / 2,
                    cy + h / 2,
                    cx - w / 2,
                    cy + h / 2,
                ]
            if len(values) < 6 or len(values) % 2:
                parsed.problem(file, where, "a segment needs at least three x, y points")
                continue
            parsed.found.append(
                Found(
                    file=file,
                    where=where,
                    image=stem,
                    by_stem=True,
                    shape=Polygons([values], unit="fraction"),
                    label=names.get(klass, str(klass)),
                )
            )
        parsed.files[file] = parsed.files.get(file, 0)
    return parsed
