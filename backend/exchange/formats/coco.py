"""COCO instances: export, with each mask as RLE (exact) or as polygons (simplified); import.

Export.

``annotations/instances.json``: one category ``object`` (id 1), every mask an annotation with
``iscrowd`` 0 and its RLE, or its polygons, as ``segmentation``; the SA-1B fields and the mask's
``source`` ride along as extra keys (COCO readers ignore them; our import restores them). Polygons
carry ``polygon_iou``, the IoU of the polygons rasterised by pycocotools with the mask, which the
export job's result also lists per mask; a mask whose polygons vanish in the simplification (specks
below the tolerance) is left out, with IoU 0. Images (``include_images``) go under ``images/``.

The JSON lists images and annotations apart, so both are written image by image to temporary
files and joined into the member at the end (`Archive.spool`).

Import: images are matched by ``file_name`` (the name our export keeps in ``original_file_name``
when there is one), reduced to its base name as uploads are; segmentations may be RLE (compressed
str or uncompressed list counts) or polygons (lists of x, y, ... in image pixels). The whole body is
first validated against `CocoFile` (strict JSON types, every field bounded), so a wrong type or an
absurd value is a problem naming its field (``annotations[3].image_id: ...``) before any work; each
annotation is then checked against its image by `importing`. The ``source``, ``predicted_iou``,
``stability_score``, ``point_coords`` and ``crop_box`` our export writes are restored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from backend.annotation.schemas import MAX_COORDINATE, RleIn
from backend.exchange import polygons as polygon_tools
from backend.exchange.formats.common import CATEGORY, ExportOptions, Fidelity
from backend.exchange.formats.sa1b import annotation as sa1b_annotation
from backend.exchange.importing import Found, Parsed, Polygons, Rle
from backend.exchange.source import ExportImage, coco_rle, pixels
from backend.tables import Mask, MaskSource

if TYPE_CHECKING:
    from backend.exchange.archive import Archive

IMAGES_DIR = "images/"
INSTANCES = "annotations/instances.json"


def image_entry(item: ExportImage) -> dict[str, Any]:
    return {
        "id": item.image.id,
        "file_name": item.name,
        "original_file_name": item.image.file_name,
        "width": item.image.width,
        "height": item.image.height,
    }


def annotation(mask: Mask) -> dict[str, Any]:
    extra = sa1b_annotation(mask)
    return {
        "id": mask.id,
        "image_id": mask.image_id,
        "category_id": CATEGORY["id"],
        "segmentation": extra["segmentation"],
        "area": extra["area"],
        "bbox": extra["bbox"],
        "iscrowd": 0,
        "predicted_iou": mask.predicted_iou,
        "stability_score": mask.stability_score,
        "point_coords": mask.point_coords,
        "crop_box": mask.crop_box,
        "source": mask.source.value,
    }


def _polygon_annotation(mask: Mask, tolerance: float, fidelity: Fidelity) -> dict[str, Any] | None:
    shapes = polygon_tools.mask_to_polygons(pixels(mask), tolerance)
    iou = polygon_tools.polygon_iou(coco_rle(mask), shapes) if shapes else 0.0
    fidelity.record(f"polygon IoU (tolerance {tolerance} px)", mask.id, iou)
    if not shapes:
        return None
    return {**annotation(mask), "segmentation": shapes, "polygon_iou": round(iou, 6)}


def _json(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _write(out: IO[bytes], first: bool, document: object) -> None:
    out.write((b"" if first else b",") + _json(document))


def _export(
    archive: Archive, images: Iterable[ExportImage], options: ExportOptions, fidelity: Fidelity, as_polygons: bool
) -> Iterator[None]:
    images_path, annotations_path = archive.spool(), archive.spool()
    with images_path.open("wb") as images_out, annotations_path.open("wb") as annotations_out:
        first_image = first_annotation = True
        for item in images:
            _write(images_out, first_image, image_entry(item))
            first_image = False
            for mask in item.masks:
                entry = (
                    _polygon_annotation(mask, options.polygon_tolerance, fidelity) if as_polygons else annotation(mask)
                )
                if entry is not None:
                    _write(annotations_out, first_annotation, entry)
                    first_annotation = False
            archive.add_image(IMAGES_DIR, item)
            yield
    instances = archive.spool()
    with instances.open("wb") as out:
        project: dict[str, Any] = {"description": "data engine export", "version": "1.0"}
        if as_polygons:
            project["polygon_tolerance_px"] = options.polygon_tolerance
        out.write(b'{"info":' + _json(project) + b',"licenses":[],"categories":' + _json([CATEGORY]))
        for key, path in ((b"images", images_path), (b"annotations", annotations_path)):
            out.write(b',"' + key + b'":[')
            with path.open("rb") as part:
                while chunk := part.read(1 << 20):
                    out.write(chunk)
            out.write(b"]")
        out.write(b"}")
    archive.add_file(INSTANCES, instances)


def export_rle(
    archive: Archive, images: Iterable[ExportImage], options: ExportOptions, fidelity: Fidelity
) -> Iterator[None]:
    return _export(archive, images, options, fidelity, as_polygons=False)


def export_polygons(
    archive: Archive, images: Iterable[ExportImage], options: ExportOptions, fidelity: Fidelity
) -> Iterator[None]:
    return _export(archive, images, options, fidelity, as_polygons=True)


# ---- import ------------------------------------------------------------------------------------

MAX_POINT_COORDS = 100  # SA-1B has one point per mask
MAX_SCHEMA_ERRORS = 10

Number = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COORDINATE, le=MAX_COORDINATE)]
Score = Annotated[float, Field(allow_inf_nan=False, ge=-1000, le=1000)]  # untrained models exceed 0..1
Name = Annotated[str, Field(min_length=1, max_length=1000)]
Id = Annotated[int, Field(ge=-(2**63), lt=2**63)]
Side = Annotated[int, Field(ge=1, le=MAX_COORDINATE)]
PolygonList = Annotated[
    list[Annotated[list[Number], Field(min_length=6, max_length=2 * polygon_tools.MAX_IMPORT_POINTS)]],
    Field(min_length=1, max_length=polygon_tools.MAX_IMPORT_POLYGONS),
]


def _segmentation_kind(value: Any) -> str | None:
    """An object is RLE, a list polygons: so an error speaks of the form the file used."""
    return "rle" if isinstance(value, dict) else "polygons" if isinstance(value, list) else None


Segmentation = Annotated[
    Annotated[RleIn, Tag("rle")] | Annotated[PolygonList, Tag("polygons")],
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
    width: Side | None = None
    height: Side | None = None


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


def looks_like(document: Any) -> bool:
    return isinstance(document, dict) and "images" in document and "annotations" in document


def parse(files: Mapping[str, bytes]) -> Parsed:
    """Every ``*.json`` of the upload (or the one file uploaded) as COCO instances."""
    parsed = Parsed()
    for file, body in files.items():
        if len(files) > 1 and not file.endswith(".json"):
            continue
        try:
            document = CocoFile.model_validate_json(body)
        except ValidationError as error:
            for e in error.errors()[:MAX_SCHEMA_ERRORS]:
                parsed.problem(file, "", f"{_field(e['loc'])}: {e['msg']}")
            continue
        parsed.files[file] = 0
        entries = {entry.id: entry for entry in document.images}
        for position, ann in enumerate(document.annotations):
            where = f"annotation {ann.id if ann.id is not None else '#' + str(position)}"
            entry = entries.get(ann.image_id)
            if entry is None:
                parsed.problem(file, where, f"image_id {ann.image_id!r} is not in the file's images")
                continue
            shape = (
                Rle(ann.segmentation.model_dump())
                if isinstance(ann.segmentation, RleIn)
                else Polygons(ann.segmentation)
            )
            columns: dict[str, Any] = {
                "predicted_iou": ann.predicted_iou,
                "stability_score": ann.stability_score,
                "point_coords": [list(p) for p in ann.point_coords] if ann.point_coords is not None else None,
                "crop_box": list(ann.crop_box) if ann.crop_box is not None else None,
            }
            if ann.source is not None:
                columns["source"] = ann.source
            size = (entry.height, entry.width) if entry.height is not None and entry.width is not None else None
            parsed.found.append(
                Found(
                    file=file,
                    where=where,
                    image=entry.original_file_name or entry.file_name,
                    shape=shape,
                    size=size,
                    columns=columns,
                    details={"annotation_id": ann.id},
                )
            )
    return parsed
