"""Masks as polygons (COCO polygons, YOLO segments) and the IoU each polygon keeps to its mask.

OpenCV traces the outlines (`cv2.findContours`, a border follower that gives the holes too) and
simplifies them (`cv2.approxPolyDP`, Douglas-Peucker: no vertex of the simplified outline is farther
than `tolerance` pixels from the traced one). Two details make a polygon of a mask exact before any
simplification:

- Pixel corners, not pixel centres: OpenCV walks the centres of the border pixels, and a polygon
  through them leaves half of each border pixel out when a COCO or YOLO reader rasterises it. The
  mask is traced at twice its resolution, so the outline runs a quarter pixel inside the true pixel
  edges: every pixel centre of the mask is inside it and every other one outside.
- Holes: a COCO polygon list is a union (pycocotools merges the polygons) and a YOLO line is one
  polygon, so neither can subtract a hole. Readers fill a polygon by the even-odd rule (pycocotools'
  `frPyObjects`, OpenCV's `fillPoly` used by Ultralytics), so a hole joined to its outline by a
  zero-width cut and walked the other way stays empty ("keyhole"). Ultralytics joins the parts of
  one COCO object into one YOLO line the same way (its converter's ``merge_multi_segment``).

What remains lost (simplified vertices, specks under a pixel after simplification) is measured: the
IoU of the rasterised polygons with the mask, as pycocotools computes it.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_util
from scipy.spatial import cKDTree

SCALE = 2  # tracing resolution (see the module docstring)
MAX_TOLERANCE = 20.0  # pixels; a coarser outline is no longer the mask


def _rings(mask: np.ndarray, tolerance: float) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """(outline, holes) of each part of the HxW bool `mask`, as float (n, 2) x, y arrays in image pixels."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return []
    y0, x0 = int(ys.min()), int(xs.min())
    crop = mask[y0 : int(ys.max()) + 1, x0 : int(xs.max()) + 1].astype(np.uint8)
    up = np.kron(crop, np.ones((SCALE, SCALE), dtype=np.uint8))
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    points: list[np.ndarray | None] = []
    for contour in contours:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, tolerance * SCALE, True)
        xy = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / SCALE + (x0, y0)
        points.append(xy if len(xy) >= 3 else None)
    parts: list[tuple[np.ndarray, list[np.ndarray]]] = []
    # RETR_CCOMP: top-level contours are outlines (parent -1), their children the holes.
    for index, (_, _, first_child, parent) in enumerate(hierarchy[0]):
        outline = points[index]
        if parent != -1 or outline is None:
            continue
        holes, child = [], first_child
        while child != -1:
            hole = points[child]
            if hole is not None:
                holes.append(hole)
            child = hierarchy[0][child][0]
        parts.append((outline, holes))
    return parts


def _join(ring: np.ndarray, other: np.ndarray) -> np.ndarray:
    """One ring walking `ring`, then a zero-width cut to the nearest point of `other`, around it and back."""
    distances, nearest = cKDTree(ring).query(other)
    j = int(np.argmin(distances))
    i = int(nearest[j])
    return np.concatenate([ring[: i + 1], other[j:], other[: j + 1], ring[i:]])


def mask_to_polygons(mask: np.ndarray, tolerance: float, single: bool = False) -> list[list[float]]:
    """COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` of the bool `mask`, holes cut in (see the module
    docstring); one polygon per part, or one for the whole mask when `single` (YOLO)."""
    rings = []
    for outline, holes in _rings(mask, tolerance):
        ring = outline
        for hole in holes:
            ring = _join(ring, hole)
        rings.append(ring)
    if single and len(rings) > 1:
        joined = rings[0]
        for ring in rings[1:]:
            joined = _join(joined, ring)
        rings = [joined]
    return [[round(float(v), 2) for v in ring.ravel()] for ring in rings]


def polygons_rle(polygons: list[list[float]], height: int, width: int) -> dict[str, Any]:
    """The polygons rasterised by pycocotools (as a COCO reader does), as RLE with bytes counts."""
    if not polygons:
        return mask_util.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
    return mask_util.merge(mask_util.frPyObjects(polygons, height, width))


def polygon_iou(mask_rle: dict[str, Any], polygons: list[list[float]]) -> float:
    """IoU of the rasterised `polygons` with the mask (COCO RLE, str or bytes counts)."""
    height, width = mask_rle["size"]
    counts = mask_rle["counts"]
    rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return float(mask_util.iou([polygons_rle(polygons, height, width)], [rle], [0])[0, 0])


# Imported polygons: a few hundred per mask and 10,000 points in all are far more than any outline
# needs. pycocotools rasterises at 5x and allocates per unit of outline length, so the outline (in
# pixels, Chebyshev) is bounded too: crossing the image 50 times is still a legitimate (if wild) mask,
# and costs a few kB per pixel of h + w; coordinates may lie `OUTSIDE_TOLERANCE` px outside.
MAX_IMPORT_POLYGONS = 500
MAX_IMPORT_POINTS = 10_000
OUTLINE_CROSSINGS = 50
OUTSIDE_TOLERANCE = 2.0


class InvalidPolygon(ValueError):
    """The polygons cannot be a mask of this image; the message says why."""


def checked_polygons_rle(polygons: list[list[float]], height: int, width: int) -> dict[str, Any]:
    """Imported polygons (image pixels) rasterised as pycocotools does, once their count, points and
    outline are within bounds (`InvalidPolygon` otherwise); RLE with str counts."""
    if not polygons or len(polygons) > MAX_IMPORT_POLYGONS:
        raise InvalidPolygon(f"a mask needs 1 to {MAX_IMPORT_POLYGONS} polygons")
    if any(len(p) % 2 or len(p) < 6 for p in polygons):
        raise InvalidPolygon("a polygon must be a list of at least three x, y pairs")
    if sum(len(p) for p in polygons) > 2 * MAX_IMPORT_POINTS:
        raise InvalidPolygon(f"polygons have more than {MAX_IMPORT_POINTS} points")
    outline = 0.0
    for polygon in polygons:
        xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if (
            not np.isfinite(xy).all()
            or (xy < -OUTSIDE_TOLERANCE).any()
            or (xy[:, 0] > width + OUTSIDE_TOLERANCE).any()
            or (xy[:, 1] > height + OUTSIDE_TOLERANCE).any()
        ):
            raise InvalidPolygon(f"polygon coordinates must lie inside the {width}x{height} image (x, y)")
        outline += float(np.abs(np.diff(xy, axis=0, append=xy[:1])).max(axis=1).sum())
    if outline > OUTLINE_CROSSINGS * (height + width):
        raise InvalidPolygon(f"polygon outline of {outline:.0f} px is longer than {OUTLINE_CROSSINGS} x (h + w)")
    merged = polygons_rle(polygons, height, width)
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}
