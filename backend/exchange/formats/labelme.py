"""LabelMe JSON import: one JSON per image (alone, or many in a zip or tar).

``{"imagePath", "imageHeight", "imageWidth", "shapes": [{"label", "points", "shape_type", "group_id",
"mask"}]}``, as LabelMe writes it (older files have no ``shape_type``, meaning polygon, and no
size). Shapes become masks as LabelMe's own ``labelme2coco`` example makes them: ``polygon``;
``rectangle`` (two corners); ``circle`` (centre and a point on it, as a 64-gon); ``mask`` (a
base64 PNG of the box between its two points); shapes sharing a ``group_id`` and label are one mask.
``line``, ``linestrip``, ``point`` and ``points`` are counted in the report, not imported.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from PIL import Image as PILImage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.annotation.schemas import MAX_COORDINATE
from backend.exchange.importing import Found, Parsed, Pixels, Polygons
from backend.exchange.polygons import MAX_IMPORT_POINTS

Number = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COORDINATE, le=MAX_COORDINATE)]
Side = Annotated[int, Field(ge=1, le=MAX_COORDINATE)]
CIRCLE_POINTS = 64
MAX_SCHEMA_ERRORS = 10
MAX_MASK_PNG = 64 << 20


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow")

    label: str = Field(default="", max_length=1000)
    points: Annotated[list[tuple[Number, Number]], Field(max_length=MAX_IMPORT_POINTS)]
    shape_type: str | None = Field(default="polygon", max_length=100)
    group_id: int | str | None = None
    mask: str | None = Field(default=None, max_length=MAX_MASK_PNG)


class LabelMeFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    imagePath: str = Field(min_length=1, max_length=4096)
    imageHeight: Side | None = None
    imageWidth: Side | None = None
    shapes: Annotated[list[Shape], Field(max_length=100_000)]


def looks_like(document: Any) -> bool:
    return isinstance(document, dict) and "shapes" in document and "imagePath" in document


def _polygon(shape: Shape) -> list[float]:
    kind = shape.shape_type or "polygon"
    points = shape.points
    if kind == "polygon":
        if len(points) < 3:
            raise ValueError("a polygon needs at least three points")
        return [v for p in points for v in p]
    if len(points) != 2:
        raise ValueError(f"a {kind} needs two points")
    (x0, y0), (x1, y1) = points
    if kind == "rectangle":
        return [x0, y0, x1, y0, x1, y1, x0, y1]
    radius = math.hypot(x1 - x0, y1 - y0)  # circle
    angles = np.linspace(0, 2 * math.pi, CIRCLE_POINTS, endpoint=False)
    return [float(v) for v in np.column_stack([x0 + radius * np.cos(angles), y0 + radius * np.sin(angles)]).ravel()]


def _mask(shape: Shape, size: tuple[int, int]) -> Pixels:
    """LabelMe's mask shape: a PNG of the box from points[0] to points[1] (rounded, inclusive)."""
    height, width = size
    if len(shape.points) != 2 or not shape.mask:
        raise ValueError("a mask shape needs two points and its base64 PNG")
    (x0, y0), (x1, y1) = ((int(round(x)), int(round(y))) for x, y in shape.points)
    try:
        data = base64.b64decode(shape.mask, validate=True)
        with PILImage.open(io.BytesIO(data)) as png:
            if png.size != (x1 - x0 + 1, y1 - y0 + 1):
                raise ValueError(f"mask PNG is {png.size[0]}x{png.size[1]}; its box is {x1 - x0 + 1}x{y1 - y0 + 1}")
            crop = np.asarray(png.convert("L")) > 0
    except (binascii.Error, OSError, SyntaxError, PILImage.DecompressionBombError) as error:
        raise ValueError(f"mask is not a base64 PNG ({error})") from None
    if x0 < 0 or y0 < 0 or x1 >= width or y1 >= height:
        raise ValueError(f"the mask's box ({x0}, {y0})-({x1}, {y1}) is outside the {width}x{height} image")

    def decode() -> np.ndarray:
        full = np.zeros((height, width), dtype=bool)
        full[y0 : y1 + 1, x0 : x1 + 1] = crop
        return full

    return Pixels(height, width, decode)


def parse(files: Mapping[str, bytes]) -> Parsed:
    parsed = Parsed()
    for file, body in files.items():
        if len(files) > 1 and not file.endswith(".json"):
            continue
        try:
            document = LabelMeFile.model_validate_json(body)
        except ValidationError as error:
            for e in error.errors()[:MAX_SCHEMA_ERRORS]:
                parsed.problem(file, ".".join(str(p) for p in e["loc"]), e["msg"])
            continue
        parsed.files[file] = 0
        size = (
            (document.imageHeight, document.imageWidth)
            if document.imageHeight is not None and document.imageWidth is not None
            else None
        )
        groups: dict[tuple[str, str], Found] = {}
        for index, shape in enumerate(document.shapes):
            where = f"shape {index} ({shape.label!r})"
            kind = shape.shape_type or "polygon"
            try:
                if kind in ("polygon", "rectangle", "circle"):
                    polygon = _polygon(shape)
                    key = (shape.label, str(shape.group_id))
                    if shape.group_id is not None and key in groups:
                        grouped = groups[key].shape
                        assert isinstance(grouped, Polygons)
                        grouped.polygons.append(polygon)
                        continue
                    found_shape: Polygons | Pixels = Polygons([polygon])
                elif kind == "mask":
                    if size is None:
                        raise ValueError("a mask shape needs the file's imageHeight and imageWidth")
                    found_shape = _mask(shape, size)
                else:
                    parsed.skip(file, kind)
                    continue
            except ValueError as error:
                parsed.problem(file, where, str(error))
                continue
            found = Found(
                file=file,
                where=where,
                image=document.imagePath,
                shape=found_shape,
                label=shape.label,
                size=size,
                details={"shape": index, "group_id": shape.group_id},
            )
            if shape.group_id is not None and isinstance(found_shape, Polygons):
                groups[(shape.label, str(shape.group_id))] = found
            parsed.found.append(found)
    return parsed
