"""CVAT for images 1.1 XML import: polygons, boxes and CVAT's mask RLE.

The file CVAT exports as "CVAT for images 1.1" (``annotations.xml``, alone or in its zip):
``<image name width height>`` elements holding ``<polygon points="x,y;x,y;...">``, ``<box xtl ytl
xbr ybr [rotation]>`` (degrees clockwise about the centre) and ``<mask rle left top width height>``,
whose ``rle`` is run lengths over the ``width`` x ``height`` box at ``left, top``, row by row,
starting with a (possibly empty) run of background. Polylines, points, skeletons, ellipses, cuboids,
tags and video tracks are not masks: they are counted per file in the report, not imported.

Parsed with defusedxml (as CVAT itself reads its files): no entities, no DTD, no external references.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from xml.etree.ElementTree import Element

import numpy as np
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from backend.annotation.schemas import MAX_COORDINATE
from backend.exchange.importing import Found, Parsed, Pixels, Polygons
from backend.exchange.polygons import MAX_IMPORT_POINTS

SKIPPED = ("polyline", "points", "skeleton", "ellipse", "cuboid", "tag", "track")


class _Bad(ValueError):
    pass


def _number(element: Element, name: str) -> float:
    raw = element.get(name)
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
        raise _Bad(f"attribute {name}={raw!r} must be a number within ±{MAX_COORDINATE}")
    return value


def _side(element: Element, name: str) -> int:
    value = _number(element, name)
    if value != int(value) or value < 1:
        raise _Bad(f"attribute {name} must be a positive integer")
    return int(value)


def _points(element: Element) -> list[float]:
    text = element.get("points", "")
    pairs = [p for p in text.split(";") if p.strip()]
    if len(pairs) > MAX_IMPORT_POINTS:
        raise _Bad(f"has more than {MAX_IMPORT_POINTS} points")
    values: list[float] = []
    for pair in pairs:
        xy = pair.split(",")
        try:
            x, y = float(xy[0]), float(xy[1])
        except (ValueError, IndexError):
            raise _Bad(f"points must be 'x,y;x,y;...' (got {pair[:40]!r})") from None
        if len(xy) != 2 or not (math.isfinite(x) and math.isfinite(y)):
            raise _Bad(f"points must be 'x,y;x,y;...' (got {pair[:40]!r})")
        values += [x, y]
    if len(values) < 6:
        raise _Bad("a polygon needs at least three points")
    return values


def _box(element: Element) -> list[float]:
    x0, y0, x1, y1 = (_number(element, k) for k in ("xtl", "ytl", "xbr", "ybr"))
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    angle = math.radians(_number(element, "rotation")) if element.get("rotation") is not None else 0.0
    if angle:
        centre = corners.mean(axis=0)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        corners = (corners - centre) @ rotation.T + centre
    return [float(v) for v in corners.ravel()]


def _mask(element: Element, height: int, width: int) -> Pixels:
    left, top = int(_number(element, "left")), int(_number(element, "top"))
    w, h = _side(element, "width"), _side(element, "height")
    if left < 0 or top < 0 or left + w > width or top + h > height:
        raise _Bad(f"the mask's box {w}x{h} at ({left}, {top}) is outside the {width}x{height} image")
    text = element.get("rle", "")
    if text.count(",") > w * h + 1:
        raise _Bad(f"rle has more runs than a {w}x{h} mask can have")
    try:
        runs = np.array([int(v) for v in text.split(",") if v.strip()], dtype=np.int64)
    except ValueError:
        raise _Bad("rle must be comma-separated run lengths") from None
    if runs.size == 0 or (runs < 0).any() or int(runs.sum()) != w * h:
        raise _Bad(f"rle runs must be non-negative and cover the {w}x{h} mask exactly")

    def decode() -> np.ndarray:
        values = np.zeros(runs.size, dtype=bool)
        values[1::2] = True
        crop = np.repeat(values, runs).reshape(h, w)
        full = np.zeros((height, width), dtype=bool)
        full[top : top + h, left : left + w] = crop
        return full

    return Pixels(height, width, decode)


def looks_like(data: bytes) -> bool:
    head = data[:4096].lstrip()
    return head.startswith(b"<") and b"<annotations" in head


def parse(files: Mapping[str, bytes]) -> Parsed:
    parsed = Parsed()
    for file, data in files.items():
        if len(files) > 1 and not file.endswith(".xml"):
            continue
        try:
            root = ElementTree.fromstring(data, forbid_dtd=True)
        except (ElementTree.ParseError, DefusedXmlException, ValueError) as error:
            parsed.problem(file, "", f"is not well-formed XML without entities ({error})")
            continue
        if root.tag != "annotations":
            parsed.problem(file, "", f"root element is <{root.tag}>, not CVAT's <annotations>")
            continue
        parsed.files[file] = 0
        for _ in root.iter("track"):
            parsed.skip(file, "track")
        for number, image in enumerate(root.iter("image")):
            name = image.get("name") or ""
            where_image = f"image {name!r}"
            try:
                height, width = _side(image, "height"), _side(image, "width")
            except _Bad as error:
                parsed.problem(file, where_image, str(error))
                continue
            for index, shape in enumerate(image):
                where = f"{where_image} <{shape.tag}> #{index}"
                label = shape.get("label")
                try:
                    if shape.tag == "polygon":
                        found_shape: Polygons | Pixels = Polygons([_points(shape)])
                    elif shape.tag == "box":
                        found_shape = Polygons([_box(shape)])
                    elif shape.tag == "mask":
                        found_shape = _mask(shape, height, width)
                    else:
                        parsed.skip(file, shape.tag)
                        continue
                except _Bad as error:
                    parsed.problem(file, where, str(error))
                    continue
                parsed.found.append(
                    Found(
                        file=file,
                        where=where,
                        image=name,
                        shape=found_shape,
                        label=label,
                        size=(height, width),
                        details={"image_id": image.get("id", str(number)), "shape": shape.tag},
                    )
                )
    return parsed
