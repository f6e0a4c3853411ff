"""Label Studio JSON import (its "JSON" export: a list of tasks): brush RLE, polygons, rectangles.

Each task's ``data`` names the image (``data.image``, else its first string), whose uploads Label
Studio prefixes with 8 hex digits and a dash (``/data/upload/3/1a2b3c4d-cat.jpg``); `importing`
tries the name without it. Each result of each (not cancelled) annotation is one mask:

- ``brushlabels`` with ``value.format`` ``rle``: Label Studio's own brush RLE (a bit-packed run
  length code of the RGBA canvas; the alpha channel is the mask), decoded by Label Studio's own
  converter (`label_studio_converter.brush.decode_rle`) once its header's value count is held to
  the image's 4·h·w, so a lying header cannot allocate more;
- ``polygonlabels``: ``value.points`` [[x, y], ...] in percent of the image;
- ``rectanglelabels``: ``value.x, y, width, height`` in percent, ``rotation`` in degrees clockwise
  about the top-left corner (in pixels).

The image's size is each result's ``original_width`` / ``original_height``. Other result types
(keypoints, choices, text) and predictions are counted in the report, not imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from backend.annotation.schemas import MAX_COORDINATE
from backend.exchange.importing import Found, Parsed, Pixels, Polygons
from backend.exchange.polygons import MAX_IMPORT_POINTS

Percent = Annotated[float, Field(allow_inf_nan=False, ge=-1000, le=1000)]
Side = Annotated[int, Field(ge=1, le=MAX_COORDINATE)]
Label = Annotated[str, Field(max_length=1000)]
Byte = Annotated[int, Field(ge=0, le=255)]
# Label Studio's decoder is pure Python (~0.1 s per 10 kB of RLE; a 2000x1500 mask drawn with a brush
# is ~10 kB): bounded per mask and per upload so that no upload costs more than about a minute.
MAX_RLE_BYTES = 2 << 20
MAX_UPLOAD_RLE_BYTES = 16 << 20
MAX_SCHEMA_ERRORS = 10


class Value(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: str | None = Field(default=None, max_length=100)
    rle: Annotated[list[Byte], Field(max_length=MAX_RLE_BYTES)] | None = None
    points: Annotated[list[tuple[Percent, Percent]], Field(max_length=MAX_IMPORT_POINTS)] | None = None
    x: Percent | None = None
    y: Percent | None = None
    width: Percent | None = None
    height: Percent | None = None
    rotation: Percent = 0.0
    brushlabels: list[Label] | None = None
    polygonlabels: list[Label] | None = None
    rectanglelabels: list[Label] | None = None


class Result(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | int | None = None
    type: str = Field(max_length=100)
    value: Value
    original_width: Side | None = None
    original_height: Side | None = None


class Annotation(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int | str | None = None
    result: list[Result] = []
    was_cancelled: bool = False


class Task(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int | str | None = None
    data: dict[str, Any]
    annotations: list[Annotation] = []
    predictions: list[Any] = []


TASKS = TypeAdapter(list[Task])


def looks_like(document: Any) -> bool:
    return isinstance(document, list) and bool(document) and isinstance(document[0], dict) and "data" in document[0]


def _image(task: Task) -> str | None:
    if isinstance(task.data.get("image"), str):
        return task.data["image"]
    return next((v for v in task.data.values() if isinstance(v, str)), None)


def _brush(value: Value, height: int, width: int) -> Pixels:
    rle = value.rle or []
    if len(rle) < 6:
        raise ValueError("brush rle is shorter than its header")
    count = int.from_bytes(bytes(rle[:4]), "big")
    if count != 4 * height * width:
        raise ValueError(f"brush rle holds {count} values; a {width}x{height} RGBA canvas has {4 * height * width}")
    if len(rle) > 8 * height * width + 16:  # 14 bits per value at most (a run of one), 4 values per pixel
        raise ValueError(f"brush rle of {len(rle)} bytes is longer than a {width}x{height} mask needs")

    def decode() -> np.ndarray:
        from label_studio_converter.brush import decode_rle  # heavy (imports nltk): only when needed

        try:
            flat = decode_rle(rle)
        except (ValueError, IndexError) as error:
            raise ValueError(f"brush rle does not decode ({error})") from None
        return np.reshape(flat, (height, width, 4))[:, :, 3] > 0

    return Pixels(height, width, decode)


def _rectangle(value: Value, height: int, width: int) -> list[float]:
    """The rectangle's corners in image pixels; Label Studio rotates it clockwise (y down) about its
    top-left corner, in pixels."""
    if value.x is None or value.y is None or value.width is None or value.height is None:
        raise ValueError("a rectangle needs value.x, y, width and height")
    x, y = value.x * width / 100, value.y * height / 100
    w, h = value.width * width / 100, value.height * height / 100
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    angle = math.radians(value.rotation)
    if angle:
        cos, sin = math.cos(angle), math.sin(angle)
        corners = corners @ np.array([[cos, sin], [-sin, cos]])
    return [float(v) for v in (corners + (x, y)).ravel()]


def _label(value: Value) -> str | None:
    labels = value.brushlabels or value.polygonlabels or value.rectanglelabels
    return ", ".join(labels) if labels else None


def parse(files: Mapping[str, bytes]) -> Parsed:
    parsed = Parsed()
    for file, body in files.items():
        if len(files) > 1 and not file.endswith(".json"):
            continue
        try:
            tasks = TASKS.validate_json(body)
        except ValidationError as error:
            for e in error.errors()[:MAX_SCHEMA_ERRORS]:
                where = ".".join(str(p) for p in e["loc"])
                parsed.problem(file, where, e["msg"])
            continue
        parsed.files[file] = 0
        brush_bytes = sum(len(r.value.rle or ()) for task in tasks for a in task.annotations for r in a.result)
        if brush_bytes > MAX_UPLOAD_RLE_BYTES:
            parsed.problem(file, "", f"brush RLE of {brush_bytes} bytes in all; at most {MAX_UPLOAD_RLE_BYTES}")
            continue
        for t, task in enumerate(tasks):
            image = _image(task)
            if image is None:
                parsed.problem(file, f"task {task.id or t}", "data names no image")
                continue
            for _ in task.predictions:
                parsed.skip(file, "prediction")
            for annotation in task.annotations:
                if annotation.was_cancelled:
                    parsed.skip(file, "cancelled annotation")
                    continue
                for r, result in enumerate(annotation.result):
                    where = f"task {task.id or t} annotation {annotation.id} result {result.id or r}"
                    kind = result.type.lower()
                    if kind not in ("brushlabels", "polygonlabels", "rectanglelabels"):
                        parsed.skip(file, kind)
                        continue
                    if result.original_width is None or result.original_height is None:
                        parsed.problem(file, where, "needs original_width and original_height")
                        continue
                    height, width = result.original_height, result.original_width
                    try:
                        if kind == "brushlabels":
                            if result.value.format != "rle":
                                raise ValueError(f"brush format {result.value.format!r} is not 'rle'")
                            shape: Pixels | Polygons = _brush(result.value, height, width)
                        elif kind == "polygonlabels":
                            points = result.value.points or []
                            if len(points) < 3:
                                raise ValueError("a polygon needs at least three points")
                            shape = Polygons([[v for p in points for v in p]], unit="percent")
                        else:
                            shape = Polygons([_rectangle(result.value, height, width)])
                    except ValueError as error:
                        parsed.problem(file, where, str(error))
                        continue
                    parsed.found.append(
                        Found(
                            file=file,
                            where=where,
                            image=image,
                            shape=shape,
                            label=_label(result.value),
                            size=(height, width),
                            details={"task_id": task.id, "annotation_id": annotation.id, "result_id": result.id},
                        )
                    )
    return parsed
