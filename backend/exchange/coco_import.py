"""Import of COCO instance masks into a project: all of the file or none of it.

Images are matched by ``file_name`` among the project's images (the images must be uploaded first):
the name our export keeps in ``original_file_name`` when there is one, else ``file_name``, reduced to
its base name as uploads are. Segmentations may be RLE (compressed str or uncompressed list counts) or
polygons (lists of x, y, ... in image pixels).

The whole body is first validated against `CocoFile` (strict JSON types, every field bounded), so a
wrong type or an absurd value is a 422 naming its field (``annotations[3].image_id: ...``) before any
work; then each annotation is checked against its image (RLE length and runs, polygon coordinates
inside the image and their outline length, before pycocotools rasterises them). The first problems (up
to `MAX_ERRORS`) are reported together and nothing is stored.

The masks are stored as `source` manual (or the ``source`` key our own COCO export writes), in the
project's current stage, with ``predicted_iou`` / ``stability_score`` / ``point_coords`` /
``crop_box`` when the annotation carries them. Re-importing the same file adds nothing: each mask's
``client_id`` is derived from (project, file digest, annotation id).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pycocotools import mask as mask_util
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.annotation.rle import InvalidRle, check_rle
from backend.annotation.schemas import MAX_COORDINATE, RleIn
from backend.images.service import clean_file_name
from backend.tables import Image, Mask, MaskSource, Project, User

MAX_ERRORS = 10
# Polygons: a few hundred per annotation and 10,000 points in all are far more than any outline
# needs. pycocotools rasterises at 5x and allocates per unit of outline length, so the outline (in
# pixels, Chebyshev) is bounded too: crossing the image 50 times is still a legitimate (if wild) mask,
# and costs a few kB per pixel of h + w; coordinates may lie `POLYGON_TOLERANCE` px outside.
MAX_POLYGONS = 500
MAX_POLYGON_POINTS = 10_000
OUTLINE_CROSSINGS = 50
POLYGON_TOLERANCE = 2.0
MAX_POINT_COORDS = 100  # SA-1B has one point per mask

Number = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COORDINATE, le=MAX_COORDINATE)]
Score = Annotated[float, Field(allow_inf_nan=False, ge=-1000, le=1000)]  # untrained models exceed 0..1
Name = Annotated[str, Field(min_length=1, max_length=1000)]
Id = Annotated[int, Field(ge=-(2**63), lt=2**63)]
Polygons = Annotated[
    list[Annotated[list[Number], Field(min_length=6, max_length=2 * MAX_POLYGON_POINTS)]],
    Field(min_length=1, max_length=MAX_POLYGONS),
]


def _segmentation_kind(value: Any) -> str | None:
    """An object is RLE, a list polygons: so an error speaks of the form the file used."""
    return "rle" if isinstance(value, dict) else "polygons" if isinstance(value, list) else None


Segmentation = Annotated[
    Annotated[RleIn, Tag("rle")] | Annotated[Polygons, Tag("polygons")],
    Discriminator(
        _segmentation_kind,
        custom_error_type="segmentation",
        custom_error_message="must be an RLE object or a list of polygons",
    ),
]


class CocoImage(BaseModel):
    model_config = ConfigDict(strict=True)

    id: Id
    file_name: Name
    original_file_name: Name | None = None  # the name the image was uploaded with (our export)


class CocoAnnotation(BaseModel):
    model_config = ConfigDict(strict=True)

    id: Id | None = None
    image_id: Id
    segmentation: Segmentation
    source: MaskSource | None = None
    predicted_iou: Score | None = None
    stability_score: Score | None = None
    point_coords: Annotated[list[tuple[Number, Number]], Field(max_length=MAX_POINT_COORDS)] | None = None
    crop_box: tuple[Number, Number, Number, Number] | None = None


class CocoFile(BaseModel):
    """COCO instances JSON as far as the import reads it (other keys are ignored)."""

    model_config = ConfigDict(strict=True)

    images: list[CocoImage]
    annotations: list[CocoAnnotation]


class CocoImportError(ValueError):
    """The file cannot be imported; `errors` lists why (each naming its annotation or field)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ImportResult:
    imported: int
    already_present: int
    images: int  # project images that received masks


_UNION_BRANCHES = {"rle", "polygons", "str", "list[int]"}  # how pydantic names a union's branches in a location


def _field(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as ``annotations[3].segmentation[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _UNION_BRANCHES:
            out += f".{part}" if out else part
    return out or "body"


def _parse(body: bytes) -> CocoFile:
    try:
        return CocoFile.model_validate_json(body)
    except ValidationError as error:
        raise CocoImportError([f"{_field(e['loc'])}: {e['msg']}" for e in error.errors()[:MAX_ERRORS]]) from None


def _polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> dict[str, Any]:
    """The polygons rasterised as pycocotools does, once their points and outline are within bounds."""
    if any(len(p) % 2 for p in polygons):
        raise InvalidRle("a polygon must be a list of x, y pairs")
    if sum(len(p) for p in polygons) > 2 * MAX_POLYGON_POINTS:
        raise InvalidRle(f"polygons have more than {MAX_POLYGON_POINTS} points")
    outline = 0.0
    for polygon in polygons:
        xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if (
            (xy < -POLYGON_TOLERANCE).any()
            or (xy[:, 0] > width + POLYGON_TOLERANCE).any()
            or (xy[:, 1] > height + POLYGON_TOLERANCE).any()
        ):
            raise InvalidRle(f"polygon coordinates must lie inside the {width}x{height} image (x, y)")
        outline += float(np.abs(np.diff(xy, axis=0, append=xy[:1])).max(axis=1).sum())
    if outline > OUTLINE_CROSSINGS * (height + width):
        raise InvalidRle(f"polygon outline of {outline:.0f} px is longer than {OUTLINE_CROSSINGS} x (h + w)")
    merged = mask_util.merge(mask_util.frPyObjects(polygons, height, width))
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}


def import_coco(db: Session, project: Project, user: User, body: bytes) -> ImportResult:
    """Check and store the COCO instances JSON `body` (committed in one transaction).

    Raises:
        CocoImportError: the file is not COCO instances JSON (naming the field), or an annotation names
            an image that is not in the project or has an invalid segmentation.
    """
    document = _parse(body)
    digest = hashlib.sha256(body).hexdigest()[:24]

    by_name: dict[str, list[Image]] = {}
    for image in db.scalars(select(Image).where(Image.project_id == project.id)):
        by_name.setdefault(image.file_name, []).append(image)
    coco_images = {entry.id: entry for entry in document.images}

    errors: list[str] = []
    masks: list[Mask] = []
    for position, annotation in enumerate(document.annotations):
        if len(errors) >= MAX_ERRORS:
            break
        annotation_id = annotation.id if annotation.id is not None else f"#{position}"
        label = f"annotation {annotation_id!r}"
        entry = coco_images.get(annotation.image_id)
        if entry is None:
            errors.append(f"{label}: image_id {annotation.image_id!r} is not in the file's images")
            continue
        name = clean_file_name(entry.original_file_name or entry.file_name)
        candidates = by_name.get(name, [])
        if len(candidates) != 1:
            why = "is not an image of this project" if not candidates else "matches several images of this project"
            errors.append(f"{label}: image file_name {name!r} {why}")
            continue
        image = candidates[0]
        segmentation = annotation.segmentation
        try:
            rle = (
                segmentation.model_dump()
                if isinstance(segmentation, RleIn)
                else _polygons_to_rle(segmentation, image.height, image.width)
            )
            checked = check_rle(rle, image.height, image.width)
        except InvalidRle as error:
            errors.append(f"{label} (image {name!r}): invalid segmentation: {error}")
            continue
        masks.append(
            Mask(
                client_id=f"coco-{project.id}-{digest}-{annotation_id}"[:64],
                image_id=image.id,
                project_id=project.id,
                rle=checked.rle,
                bbox=checked.bbox,
                area=checked.area,
                source=annotation.source or MaskSource.manual,
                stage=project.stage,
                author_id=user.id,
                predicted_iou=annotation.predicted_iou,
                stability_score=annotation.stability_score,
                point_coords=[list(p) for p in annotation.point_coords]
                if annotation.point_coords is not None
                else None,
                crop_box=list(annotation.crop_box) if annotation.crop_box is not None else None,
                prompts={"import": {"format": "coco", "annotation_id": annotation.id}},
            )
        )
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
