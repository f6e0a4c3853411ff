"""Imports of other tools' files, each written by that tool's own library or a published sample.

- Label Studio: brush masks encoded by Label Studio's converter (`label_studio_converter.brush.
  mask2rle`), polygons and rectangles by its COCO import (`convert_coco_to_ls`), as Label Studio
  exports them (a JSON list of tasks);
- YOLO: label files written by Label Studio's YOLO export (`Converter.convert_to_yolo`) from those tasks;
- CVAT: the example of CVAT's own format documentation (tests/backend/data/exchange/README.md);
- LabelMe: LabelMe's published example annotation;
- PNG instance masks: our own export's PNGs (16-bit), read back into another project.

And bad input for each importer: wrong schema, missing images, masks outside the image, absurd
sizes: one 422 naming the file and place, nothing stored.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from label_studio_converter.brush import decode_rle, mask2rle
from label_studio_converter.converter import Converter
from label_studio_converter.imports.coco import convert_coco_to_ls
from PIL import Image as PILImage
from pycocotools import mask as mask_util
from sqlalchemy import func, select

from backend.exchange.polygons import mask_to_polygons
from backend.tables import Image, Mask
from tests.backend.jobs_helpers import upload
from tests.backend.stage3_helpers import box_mask, decode, ground_truth_mask

DATA = Path(__file__).parent / "data" / "exchange"
LABEL_CONFIG = """<View><Image name="image" value="$image"/>
<PolygonLabels name="labelpolygons" toName="image"><Label value="object"/></PolygonLabels>
<RectangleLabels name="label_rectangles" toName="image"><Label value="object"/></RectangleLabels>
<BrushLabels name="brush" toName="image"><Label value="object"/></BrushLabels></View>"""


def _image(client, headers, project_id: int, name: str, width: int, height: int) -> int:
    buffer = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="PNG"
    )
    response = client.post(
        f"/api/projects/{project_id}/images", files=[("files", (name, buffer.getvalue(), "image/png"))], headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()["images"][0]["id"]


def _masks(db, project_id: int) -> list[Mask]:
    db.expire_all()
    return list(db.scalars(select(Mask).where(Mask.project_id == project_id).order_by(Mask.id)))


def _count(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Mask))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _post(client, headers, project_id: int, fmt: str, body: bytes):
    return client.post(f"/api/projects/{project_id}/import/{fmt}", content=body, headers=headers)


def _refused(response, *fragments: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert "nothing imported" in body["detail"] and body["errors"], body
    for fragment in fragments:
        assert fragment in body["detail"], (fragment, body["detail"])


@pytest.fixture
def grabcut(client, db, project, manager_headers, data_root) -> tuple[Image, np.ndarray]:
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    image = db.get(Image, image_id)
    return image, ground_truth_mask(data_root, image.file_name)


def _label_studio_tasks(tmp_path: Path, image: Image, mask: np.ndarray) -> list[dict]:
    """Label Studio tasks as Label Studio's converter writes them: polygons and boxes from COCO, and a
    brush result from its brush encoder."""
    h, w = mask.shape
    coco = {
        "images": [{"id": 1, "file_name": image.file_name, "width": w, "height": h}],
        "categories": [{"id": 1, "name": "object"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": mask_to_polygons(mask, 0.5, single=True)},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 50]},
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    convert_coco_to_ls(str(tmp_path / "coco.json"), str(tmp_path / "ls.json"), image_root_url="/data/upload/7/")
    tasks = json.loads((tmp_path / "ls.json").read_text())
    tasks[0]["data"]["image"] = f"/data/upload/7/1a2b3c4d-{image.file_name}"  # as Label Studio names uploads
    tasks[0]["id"], tasks[0]["annotations"][0]["id"] = 1, 1  # the ids a Label Studio export carries
    brush = {
        "id": "b1",
        "type": "brushlabels",
        "from_name": "brush",
        "to_name": "image",
        "original_width": w,
        "original_height": h,
        "value": {"format": "rle", "rle": mask2rle((mask * 255).astype(np.uint8)), "brushlabels": ["object"]},
    }
    tasks[0]["annotations"][0]["result"].append(brush)
    return tasks


def test_label_studio_brush_polygons_and_boxes(client, db, project, manager_headers, grabcut, tmp_path):
    image, mask = grabcut
    tasks = _label_studio_tasks(tmp_path, image, mask)
    kinds = [r["type"] for r in tasks[0]["annotations"][0]["result"]]
    assert sorted(kinds) == ["brushlabels", "polygonlabels", "rectanglelabels"]
    response = _post(client, manager_headers, project.id, "auto", json.dumps(tasks).encode())
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "label_studio" and response.json()["imported"] == 3
    by_kind = {m.provenance["result_id"]: m for m in _masks(db, project.id)}
    brush = decode(by_kind["b1"].rle).astype(bool)
    assert np.array_equal(brush, mask)  # Label Studio's own RLE, exact
    for m in by_kind.values():
        assert m.source == "imported" and m.provenance["origin"] == "imported"
        assert m.provenance["format"] == "label_studio" and m.provenance["label"] == "object"
    polygon, box = (decode(m.rle).astype(bool) for k, m in by_kind.items() if k != "b1")
    assert _iou(polygon, mask) >= 0.98  # percent coordinates, rounded by the converter
    assert box.sum() == pytest.approx(100 * 50, rel=0.05) and box[20:70, 10:110].mean() > 0.97


def test_label_studio_bad_input(client, db, project, manager_headers, grabcut, tmp_path):
    image, mask = grabcut
    h, w = mask.shape
    good = _label_studio_tasks(tmp_path, image, mask)

    def variant(change) -> bytes:
        tasks = json.loads(json.dumps(good))
        change(tasks[0]["annotations"][0]["result"])
        return json.dumps(tasks).encode()

    def lie_about_count(results):  # a header claiming 2^32 - 1 values: no allocation follows it
        brush = next(r for r in results if r["type"] == "brushlabels")
        brush["value"]["rle"] = [255, 255, 255, 255] + brush["value"]["rle"][4:]

    def outside(results):
        next(r for r in results if r["type"] == "polygonlabels")["value"]["points"][0] = [180.0, 50.0]

    def wrong_size(results):
        next(r for r in results if r["type"] == "polygonlabels")["original_width"] = w + 10

    cases = {
        "not a task list": (json.dumps({"tasks": []}).encode(), "label_studio import refused"),
        "rle header": (variant(lie_about_count), "brush rle holds 4294967295 values"),
        "polygon outside": (variant(outside), "must lie inside the"),
        "size differs": (variant(wrong_size), f"the file's image is {w + 10}x{h}"),
        "byte out of range": (
            variant(lambda rs: rs[-1]["value"]["rle"].__setitem__(5, 999)),
            "less than or equal to 255",
        ),
    }
    for name, (body, message) in cases.items():
        _refused(_post(client, manager_headers, project.id, "label_studio", body), message)
        assert _count(db) == 0, name
    other = json.loads(json.dumps(good))
    other[0]["data"]["image"] = "/data/upload/7/1a2b3c4d-elsewhere.jpg"
    _refused(
        _post(client, manager_headers, project.id, "label_studio", json.dumps(other).encode()),
        "image '1a2b3c4d-elsewhere.jpg' is not an image of this project",
    )
    assert _count(db) == 0


def test_yolo_written_by_label_studio(client, db, project, manager_headers, grabcut, tmp_path):
    image, mask = grabcut
    tasks = _label_studio_tasks(tmp_path, image, mask)
    tasks[0]["annotations"][0]["result"] = [
        r for r in tasks[0]["annotations"][0]["result"] if r["type"] != "brushlabels"
    ]
    tasks[0]["data"]["image"] = f"/data/upload/7/{image.file_name}"
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    Converter(LABEL_CONFIG, project_dir=str(tmp_path), download_resources=False).convert_to_yolo(
        str(tmp_path / "tasks.json"), str(tmp_path / "yolo"), is_dir=False
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for path in (tmp_path / "yolo").rglob("*"):
            if path.is_file():
                z.write(path, path.relative_to(tmp_path / "yolo").as_posix())
    names = zipfile.ZipFile(archive).namelist()
    assert f"labels/{Path(image.file_name).stem}.txt" in names and "classes.txt" in names
    response = _post(client, manager_headers, project.id, "auto", archive.getvalue())
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "yolo" and response.json()["imported"] == 2
    polygon, box = (decode(m.rle).astype(bool) for m in _masks(db, project.id))
    assert _iou(polygon, mask) >= 0.98
    assert box[20:70, 10:110].mean() > 0.97


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():  # a fixed timestamp: the same files make the same bytes (content hash)
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def test_yolo_bad_input(client, db, project, manager_headers, grabcut):
    image, _ = grabcut
    label = f"labels/{Path(image.file_name).stem}.txt"
    cases = {
        "not numbers": ({label: b"0 a b c d e f\n"}, "line 1: must be '<class> x1 y1"),
        "outside": ({label: b"0 0.1 0.1 1.5 0.1 0.5 0.5\n"}, "fractions of the image"),
        "two points": ({label: b"0 0.1 0.1 0.2 0.2\n0 0.1 0.1 0.3\n"}, "line 2: a segment needs at least three"),
        "no image": ({"labels/nowhere.txt": b"0 0.1 0.1 0.5 0.1 0.5 0.5\n"}, "'nowhere' is not an image"),
        "too many points": ({label: ("0" + " 0.5" * 30000 + "\n").encode()}, "more than 10000 points"),
        "no labels": ({"data.yaml": b"names: [a]\n"}, "holds no masks"),
    }
    for name, (files, message) in cases.items():
        _refused(_post(client, manager_headers, project.id, "yolo", _zip(files)), message)
        assert _count(db) == 0, name


def test_cvat_documentation_sample(client, db, project, manager_headers):
    _image(client, manager_headers, project.id, "filename000.jpg", 1600, 1200)
    body = (DATA / "cvat_for_images_docs.xml").read_bytes()
    response = client.post(
        f"/api/projects/{project.id}/import/auto?file_name=annotations.xml", content=body, headers=manager_headers
    )
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["format"] == "cvat" and report["imported"] == 3
    assert report["files"][0]["file"] == "annotations.xml"
    assert report["files"][0]["skipped"] == {"polyline": 2, "points": 1, "tag": 1, "skeleton": 1}
    box, polygon, blob = _masks(db, project.id)
    assert box.provenance["label"] == "plate" and box.bbox == [797.0, 871.0, 169.0, 58.0]
    assert polygon.provenance["label"] == "car" and polygon.area > 300_000
    # CVAT's mask RLE: runs over the 13x15 box at (707, 888), row by row, background first; decoded
    # here as CVAT's own converter does (cvat/apps/dataset_manager/formats/transformations.py): COCO
    # runs of size [w, h] (column-major), transposed.
    runs = [3, 5, 7, 7, 5, 9, 3, 11, 2, 11, 2, 12, 1, 12, 1, 26, 1, 12, 1, 12, 2, 11, 3, 9, 5, 7, 7, 5, 3]
    cvat = mask_util.decode(mask_util.frPyObjects({"counts": runs, "size": [13, 15]}, 13, 15)).transpose()
    assert blob.bbox == [707.0, 888.0, 13.0, 15.0] and blob.area == sum(runs[1::2])
    assert np.array_equal(decode(blob.rle)[888:903, 707:720], cvat)


def test_cvat_bad_input(client, db, project, manager_headers):
    _image(client, manager_headers, project.id, "filename000.jpg", 1600, 1200)
    sample = (DATA / "cvat_for_images_docs.xml").read_text()
    cases = {
        "not xml": (b"<annotations><image", "is not well-formed XML"),
        "entities": (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><annotations>&x;</annotations>',
            "without entities",
        ),
        "mask outside": (sample.replace('left="707"', 'left="1595"').encode(), "is outside the 1600x1200 image"),
        "runs short": (sample.replace('7, 5, 3"', '7, 5, 2"').encode(), "cover the 13x15 mask exactly"),
        "absurd box": (sample.replace('xbr="965.52"', 'xbr="1e12"').encode(), "within ±100000"),
        "size differs": (sample.replace('height="1200"', 'height="1000"').encode(), "the file's image is 1600x1000"),
        "missing image": (sample.replace("filename000.jpg", "other.jpg").encode(), "'other.jpg' is not an image"),
    }
    for name, (body, message) in cases.items():
        _refused(_post(client, manager_headers, project.id, "cvat", body), message)
        assert _count(db) == 0, name


def test_labelme_published_sample(client, db, project, manager_headers):
    _image(client, manager_headers, project.id, "2011_000006.jpg", 500, 375)
    body = (DATA / "labelme_2011_000006.json").read_bytes()
    response = _post(client, manager_headers, project.id, "auto", _zip({"ann/2011_000006.json": body}))
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "labelme" and response.json()["imported"] == 5
    masks = _masks(db, project.id)
    assert [m.provenance["label"] for m in masks] == ["chair", "person-4", "__ignore__", "sofa", "sofa"]
    assert masks[0].area > 40_000 and all(m.provenance["file"] == "ann/2011_000006.json" for m in masks)


def test_labelme_published_primitives(client, db, project, manager_headers):
    """Rectangles and circles become masks of their area; lines and points are counted, not imported."""
    _image(client, manager_headers, project.id, "primitives.jpg", 560, 450)
    body = (DATA / "labelme_primitives.json").read_bytes()
    response = _post(client, manager_headers, project.id, "labelme", body)
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 4, response.json()
    (report,) = response.json()["files"]
    assert report["skipped"] == {"line": 1, "point": 1, "linestrip": 1}
    masks = _masks(db, project.id)
    assert [m.provenance["label"] for m in masks] == ["rectangle", "circle", "rectangle", "polygon"]
    first_box, circle, second_box, _ = (m.area for m in masks)
    assert abs(first_box - 100 * 100) <= 2 * 201  # 100x100 px, give or take the edge pixels
    assert abs(second_box - 151 * 102) <= 2 * 253
    radius = math.hypot(225 - 195, 125 - 84)
    assert abs(circle - math.pi * radius**2) < 0.02 * math.pi * radius**2
    assert masks[0].bbox == pytest.approx([32, 35, 100, 100], abs=1)


def test_labelme_bad_input(client, db, project, manager_headers):
    _image(client, manager_headers, project.id, "2011_000006.jpg", 500, 375)
    sample = json.loads((DATA / "labelme_2011_000006.json").read_text())

    def variant(**changes) -> bytes:
        return json.dumps({**sample, **changes}).encode()

    cases = {
        "shapes not a list": (variant(shapes={"a": 1}), "shapes: Input should be a valid array"),
        "point far out": (variant(shapes=[{"label": "x", "points": [[1e9, 1], [2, 2], [3, 1]]}]), "less than or equal"),
        "outside": (variant(shapes=[{"label": "x", "points": [[600, 1], [700, 2], [650, 90]]}]), "must lie inside"),
        "size differs": (variant(imageHeight=100, imageWidth=500), "the file's image is 500x100"),
        "mask not png": (
            variant(
                imageHeight=375,
                imageWidth=500,
                shapes=[{"label": "m", "shape_type": "mask", "points": [[0, 0], [9, 9]], "mask": "AAAA"}],
            ),
            "mask is not a base64 PNG",
        ),
        "missing image": (variant(imagePath="../elsewhere/x.jpg"), "'x.jpg' is not an image"),
    }
    for name, (body, message) in cases.items():
        _refused(_post(client, manager_headers, project.id, "labelme", body), message)
        assert _count(db) == 0, name


def test_png_instance_masks_into_another_project(client, db, project, manager_headers, data_root):
    ids = upload(client, manager_headers, project.id, data_root, 2)
    from tests.backend.stage3_helpers import add_auto_masks

    for image in (db.get(Image, i) for i in ids):
        object_mask = ground_truth_mask(data_root, image.file_name)
        corner = box_mask(image.height, image.width, 0, 0, 10, 10) & ~object_mask
        add_auto_masks(db, image, [object_mask, corner], fraction=0.0)
    export = client.get(f"/api/projects/{project.id}/export?format=png", headers=manager_headers)
    with tarfile.open(fileobj=io.BytesIO(export.content)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    other = client.post("/api/projects", json={"name": "png copy"}, headers=manager_headers).json()["id"]
    upload(client, manager_headers, other, data_root, 2)
    masks_only = {name: data for name, data in files.items() if name.startswith("masks/")}
    response = _post(client, manager_headers, other, "auto", _zip(masks_only))
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "png" and response.json()["imported"] == 4
    before = {(m.image.file_name if hasattr(m, "image") else None, m.area) for m in _masks(db, project.id)}
    after = {(None, m.area) for m in _masks(db, other)}
    assert {a for _, a in before} == {a for _, a in after}
    again = _post(client, manager_headers, other, "png", _zip(masks_only))
    assert again.json()["imported"] == 0 and again.json()["already_present"] == 4


def test_png_bad_input(client, db, project, manager_headers):
    _image(client, manager_headers, project.id, "a.png", 40, 30)

    def png(array: np.ndarray, mode: str | None = None) -> bytes:
        out = io.BytesIO()
        PILImage.fromarray(array, mode=mode).save(out, format="PNG") if mode else PILImage.fromarray(array).save(
            out, format="PNG"
        )
        return out.getvalue()

    labels = np.zeros((30, 40), dtype=np.uint16)
    labels[5:10, 5:10] = 1
    cases = {
        "wrong size": ({"masks/a.png": png(np.zeros((31, 40), np.uint16) + 1)}, "the mask is 40x31 pixels"),
        "rgb": ({"masks/a.png": png(np.zeros((30, 40, 3), np.uint8))}, "grayscale or palette PNG"),
        "not png": ({"masks/a.png": b"\x89PNG nonsense"}, "is not a readable PNG"),
        "no image": ({"masks/b.png": png(labels)}, "'b' is not an image"),
    }
    for name, (files, message) in cases.items():
        _refused(_post(client, manager_headers, project.id, "png", _zip(files)), message)
        assert _count(db) == 0, name
    ok = _post(client, manager_headers, project.id, "png", _zip({"masks/a.png": png(labels)}))
    assert ok.status_code == 201 and ok.json()["imported"] == 1


def test_unknown_uploads_and_archives(client, db, project, manager_headers):
    _refused(_post(client, manager_headers, project.id, "auto", b"hello"), "its format is none of")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for i in range(3):
            z.writestr(f"labels/{i}.txt", b"0" * (1 << 30))
    _refused(_post(client, manager_headers, project.id, "yolo", bomb.getvalue()), "unpacks to more than")
    _refused(_post(client, manager_headers, project.id, "coco", b"PK\x03\x04broken"), "is not a readable zip")
    assert _count(db) == 0
    assert decode_rle  # Label Studio's decoder is the one the import uses
