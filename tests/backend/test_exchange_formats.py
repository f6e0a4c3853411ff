"""Every export format read back by a reader that is not ours, mask by mask.

Masks are real grabcut object masks (with holes and several parts) and boxes, some overlapping.
The readers: pycocotools (COCO RLE and polygons), the Ultralytics layout read as its documentation
states it (``data.yaml`` by PyYAML, label files found by Ultralytics' images->labels path rule,
segments rasterised by pycocotools and by OpenCV's ``fillPoly`` as Ultralytics does), PIL for the
VOC and instance PNGs and ElementTree for VOC's XML. Datumaro (CVAT's format library) would be the
natural oracle for VOC, but it does not install beside our pins: it downgrades Pillow and OpenCV.
"""

from __future__ import annotations

import io
import json
import tarfile
from xml.etree import ElementTree

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image as PILImage
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from sqlalchemy import select

from backend.exchange.polygons import mask_to_polygons, polygon_iou
from backend.tables import Image, Mask
from tests.backend.jobs_helpers import upload
from tests.backend.stage3_helpers import add_auto_masks, box_mask, decode, ground_truth_mask


@pytest.fixture
def masks(client, db, project, manager_headers, data_root) -> dict[int, np.ndarray]:
    """Three images: object masks, a box inside an object (overlap), a box apart; id -> pixels."""
    ids = upload(client, manager_headers, project.id, data_root, 3)
    for image in (db.get(Image, i) for i in ids):
        h, w = image.height, image.width
        add_auto_masks(
            db, image, [ground_truth_mask(data_root, image.file_name), box_mask(h, w, 0, 0, 12, 17)], fraction=0.0
        )
    db.expire_all()
    stored = db.scalars(select(Mask).where(Mask.project_id == project.id, Mask.deleted_at.is_(None))).all()
    return {m.id: decode(m.rle).astype(bool) for m in stored}


def _export(client, headers, project_id: int, fmt: str, **params) -> dict[str, bytes]:
    query = "&".join(f"{k}={v}" for k, v in {"format": fmt, "include_images": "true", **params}.items())
    response = client.get(f"/api/projects/{project_id}/export?{query}", headers=headers)
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_polygons_keep_their_stated_iou(data_root):
    """Traced at pixel corners with holes cut in, polygons are exact at tolerance 0; the loss at a
    tolerance is what `polygon_iou` reports (and what pycocotools reads back)."""
    rows = []
    for name in ("106024", "124080", "153077", "153093", "181079"):
        mask = ground_truth_mask(data_root, f"{name}.jpg")
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        for tolerance in (0.0, 0.5, 1.0, 2.0):
            shapes = mask_to_polygons(mask, tolerance)
            read = mask_util.decode(mask_util.merge(mask_util.frPyObjects(shapes, *mask.shape))).astype(bool)
            assert _iou(read, mask) == pytest.approx(polygon_iou(rle, shapes), abs=1e-9)
            rows.append((tolerance, _iou(read, mask)))
    assert all(iou == 1.0 for t, iou in rows if t == 0.0)
    assert min(iou for t, iou in rows if t == 0.5) >= 0.99
    assert min(iou for t, iou in rows if t == 2.0) >= 0.94


def test_coco_polygons_read_back_by_pycocotools(client, db, project, manager_headers, masks):
    members = _export(client, manager_headers, project.id, "coco_polygons", polygon_tolerance=0.5)
    instances = json.loads(members["annotations/instances.json"])
    coco = COCO()
    coco.dataset = instances
    coco.createIndex()
    assert instances["info"]["polygon_tolerance_px"] == 0.5
    fidelity = json.loads(members["fidelity.json"])
    assert sorted(int(k) for k in fidelity["iou"]) == sorted(masks)
    for ann in instances["annotations"]:
        assert isinstance(ann["segmentation"], list)
        iou = _iou(coco.annToMask(ann).astype(bool), masks[ann["id"]])
        assert iou == pytest.approx(ann["polygon_iou"], abs=1e-6) == pytest.approx(fidelity["iou"][str(ann["id"])])
        assert iou >= 0.99
    exact = _export(client, manager_headers, project.id, "coco_polygons", polygon_tolerance=0)
    for ann in json.loads(exact["annotations/instances.json"])["annotations"]:
        assert np.array_equal(coco.annToMask(ann).astype(bool), masks[ann["id"]])


def test_yolo_read_back_as_ultralytics_documents_it(client, db, project, manager_headers, masks):
    members = _export(client, manager_headers, project.id, "yolo")
    data = yaml.safe_load(members["data.yaml"])
    assert data["names"] == {0: "object"} and data["train"] == "images/train"
    images = {n: db.get(Image, int(n.split("/")[-1].split("_")[0])) for n in members if n.startswith("images/train/")}
    assert len(images) == 3
    fidelity = json.loads(members["fidelity.json"])["iou"]
    for name, image in images.items():
        label = "labels/" + name[len("images/") :].rsplit(".", 1)[0] + ".txt"  # Ultralytics' img2label_paths
        lines = members[label].decode().splitlines()
        own = db.scalars(select(Mask.id).where(Mask.image_id == image.id).order_by(Mask.id)).all()
        assert len(lines) == len(own)
        for line, mask_id in zip(lines, own):
            fields = line.split()
            assert fields[0] == "0"
            xy = np.array(fields[1:], dtype=np.float64).reshape(-1, 2) * (image.width, image.height)
            by_coco = mask_util.decode(mask_util.frPyObjects([xy.ravel().tolist()], image.height, image.width))
            iou = _iou(by_coco[:, :, 0].astype(bool), masks[mask_id])
            assert iou == pytest.approx(fidelity[str(mask_id)], abs=1e-6) and iou >= 0.99
            # Ultralytics rasterises a segment with cv2.fillPoly (ultralytics.data.utils.polygon2mask),
            # which fills integer vertices inclusively: a border pixel more, which only a large mask shrugs off.
            filled = np.zeros((image.height, image.width), dtype=np.uint8)
            cv2.fillPoly(filled, [np.round(xy).astype(np.int32)], color=1)
            if masks[mask_id].sum() > 5000:
                assert _iou(filled.astype(bool), masks[mask_id]) >= 0.95


def _instances_by_png(png: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(png)) as image:
        return np.asarray(image)


def _overlaps(masks: dict[int, np.ndarray], mask_id: int) -> bool:
    return any((masks[mask_id] & other).any() for other_id, other in masks.items() if other_id != mask_id)


def test_png_instance_masks_read_back_by_pil(client, db, project, manager_headers, masks):
    members = _export(client, manager_headers, project.id, "png")
    index = json.loads(members["instances.json"])
    fidelity = json.loads(members["fidelity.json"])["iou"]
    seen = set()
    for png_name, entry in index.items():
        labels = _instances_by_png(members[f"masks/{png_name}"])
        assert labels.dtype == np.uint16
        with PILImage.open(io.BytesIO(members[f"masks/{png_name}"])) as image:
            assert image.mode.startswith("I;16") or image.mode == "I"
        for value, mask_id in entry["instances"].items():
            iou = _iou(labels == int(value), masks[mask_id])
            assert iou == pytest.approx(fidelity[str(mask_id)], abs=1e-6)
            same_image = {i: m for i, m in masks.items() if m.shape == labels.shape}
            if not _overlaps(same_image, mask_id) or iou == 1.0:
                assert iou >= 0.999
            seen.add(mask_id)
    assert seen == set(masks)


def test_voc_read_back_by_pil_and_elementtree(client, db, project, manager_headers, masks):
    members = _export(client, manager_headers, project.id, "voc")
    stems = members["ImageSets/Segmentation/default.txt"].decode().split()
    assert len(stems) == 3
    fidelity = json.loads(members["fidelity.json"])["iou"]
    for stem in stems:
        root = ElementTree.fromstring(members[f"Annotations/{stem}.xml"])
        objects = root.findall("object")
        image = db.get(Image, int(stem.split("_")[0]))
        assert int(root.find("size/width").text) == image.width and root.find("segmented").text == "1"
        assert f"JPEGImages/{root.find('filename').text}" in members
        with PILImage.open(io.BytesIO(members[f"SegmentationObject/{stem}.png"])) as png:
            assert png.mode == "P" and png.getpalette()[3:6] == [128, 0, 0]  # VOC's colour map
            objects_png = np.asarray(png)
        classes = _instances_by_png(members[f"SegmentationClass/{stem}.png"])
        assert np.array_equal(classes > 0, objects_png > 0)
        own = db.scalars(select(Mask).where(Mask.image_id == image.id).order_by(Mask.id)).all()
        assert len(objects) == len(own)
        for value, (obj, mask) in enumerate(zip(objects, own), start=1):
            pixels = objects_png == value
            assert _iou(pixels, masks[mask.id]) == pytest.approx(fidelity[str(mask.id)], abs=1e-6)
            x, y, w, h = mask.bbox
            assert [int(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")] == [
                x + 1,
                y + 1,
                x + w,
                y + h,
            ]


def test_export_job_reports_iou_per_mask(client, db, project, manager_headers, masks, eager):
    started = client.post(
        f"/api/projects/{project.id}/exports",
        json={"format": "yolo", "polygon_tolerance": 1.0},
        headers=manager_headers,
    )
    assert started.status_code == 202, started.text
    job = client.get(f"/api/jobs/{started.json()['id']}", headers=manager_headers).json()
    assert job["status"] == "succeeded", job
    fidelity = job["result"]["fidelity"]
    assert job["result"]["polygon_tolerance"] == 1.0 and "tolerance 1.0 px" in fidelity["measure"]
    assert sorted(int(k) for k in fidelity["iou"]) == sorted(masks) and fidelity["masks"] == len(masks)
    assert 0.9 < fidelity["min_iou"] <= fidelity["mean_iou"] < 1.0
    exact = client.post(f"/api/projects/{project.id}/exports", json={"format": "coco"}, headers=manager_headers)
    assert client.get(f"/api/jobs/{exact.json()['id']}", headers=manager_headers).json()["result"]["fidelity"] is None
    for bad in ({"format": "yolo", "polygon_tolerance": -1}, {"format": "yolo", "polygon_tolerance": 1e9}):
        assert client.post(f"/api/projects/{project.id}/exports", json=bad, headers=manager_headers).status_code == 422
