"""SA-1B / COCO export (streamed and as a job) and COCO import, on SQLite and PostgreSQL.

Masks are hand-built auto masks (real grabcut object masks and boxes), a manual mask saved through
the API, and a rejected auto mask that must not be exported. Every exported RLE is decoded with
pycocotools and compared pixel by pixel with the stored masks; the COCO export is imported into a
new project and must give the same masks.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from pycocotools.coco import COCO
from sqlalchemy import func, select

from backend.tables import Image, Mask
from tests.backend.jobs_helpers import GRABCUT_IMAGES, upload
from tests.backend.stage3_helpers import add_auto_masks, box_mask, decode, ground_truth_mask, rle_of

SCHEMA = json.loads((Path(__file__).parent / "sa1b_schema.json").read_text())


@pytest.fixture
def filled(client, db, project, manager_headers, data_root):
    """Two images: A with two auto masks and a manual one, B with one auto mask (rejected) and one kept."""
    ids = upload(client, manager_headers, project.id, data_root, 2)
    a, b = db.get(Image, ids[0]), db.get(Image, ids[1])
    add_auto_masks(
        db, a, [ground_truth_mask(data_root, a.file_name), box_mask(a.height, a.width, 5, 5, 40, 90)], fraction=0.0
    )
    add_auto_masks(
        db, b, [ground_truth_mask(data_root, b.file_name), box_mask(b.height, b.width, 0, 0, 20, 20)], fraction=1.0
    )
    manual = box_mask(a.height, a.width, 50, 60, 70, 200)
    response = client.post(
        f"/api/images/{a.id}/masks", headers=manager_headers, json={"client_id": "manual-1", "rle": rle_of(manual)}
    )
    assert response.status_code == 201, response.text
    rejected = db.scalar(select(Mask.id).where(Mask.image_id == b.id).order_by(Mask.id.desc()))
    assert (
        client.post(f"/api/masks/{rejected}/review", json={"decision": "reject"}, headers=manager_headers).status_code
        == 201
    )
    db.expire_all()
    return a, b, rejected


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _live_masks(db, image_id: int) -> list[Mask]:
    return list(db.scalars(select(Mask).where(Mask.image_id == image_id, Mask.deleted_at.is_(None)).order_by(Mask.id)))


def test_sa1b_export_streams_valid_json_with_pixel_exact_masks(client, db, project, manager_headers, filled, settings):
    a, b, rejected = filled
    response = client.get(f"/api/projects/{project.id}/export?format=sa1b&include_images=true", headers=manager_headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-tar"
    assert f"project-{project.id}-sa1b.tar" in response.headers["content-disposition"]
    members = _members(response.content)
    assert sorted(members) == sorted(
        [f"sa1b/{a.id}.json", f"sa1b/{b.id}.json", f"images/{a.id}_{a.file_name}", f"images/{b.id}_{b.file_name}"]
    )
    for image in (a, b):
        document = json.loads(members[f"sa1b/{image.id}.json"])
        jsonschema.validate(document, SCHEMA)
        assert document["image"] == {
            "image_id": image.id,
            "file_name": f"{image.id}_{image.file_name}",
            "original_file_name": image.file_name,
            "width": image.width,
            "height": image.height,
        }
        assert (
            members[f"images/{image.id}_{image.file_name}"] == (settings.storage_path / image.storage_key).read_bytes()
        )
        stored = _live_masks(db, image.id)
        assert [ann["id"] for ann in document["annotations"]] == [m.id for m in stored]
        for ann, mask in zip(document["annotations"], stored):
            pixels = decode(ann["segmentation"])
            assert pixels.shape == (image.height, image.width)
            assert np.array_equal(pixels, decode(mask.rle))
            assert ann["area"] == int(pixels.sum())
            ys, xs = np.nonzero(pixels)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            if mask.source == "auto":
                assert ann["predicted_iou"] == mask.predicted_iou and ann["crop_box"] == [
                    0,
                    0,
                    image.width,
                    image.height,
                ]
                assert len(ann["point_coords"]) == 1
            else:
                assert ann["predicted_iou"] is None and ann["point_coords"] is None
    assert rejected not in [ann["id"] for ann in json.loads(members[f"sa1b/{b.id}.json"])["annotations"]]
    assert len(json.loads(members[f"sa1b/{a.id}.json"])["annotations"]) == 3


def test_schema_rejects_a_malformed_document():
    bad = {
        "image": {"image_id": 1, "file_name": "x.jpg", "width": 2, "height": 2},
        "annotations": [
            {
                "id": 1,
                "segmentation": {"size": [2, 2], "counts": [1, 2]},
                "bbox": [0, 0, 1, 1],
                "area": 1,
                "predicted_iou": 0.9,
                "stability_score": 0.9,
                "point_coords": [[0, 0]],
                "crop_box": [0, 0, 2, 2],
            }
        ],
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)  # counts must be the compressed string


def test_coco_export_import_round_trip_is_pixel_identical(client, db, project, manager_headers, filled, data_root):
    a, b, _ = filled
    response = client.get(f"/api/projects/{project.id}/export?format=coco", headers=manager_headers)
    assert response.status_code == 200, response.text
    members = _members(response.content)
    assert list(members) == ["annotations/instances.json"]
    instances = json.loads(members["annotations/instances.json"])
    assert instances["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    coco = COCO()
    coco.dataset = instances
    coco.createIndex()
    originals = {m.id: m for image in (a, b) for m in _live_masks(db, image.id)}
    assert sorted(coco.getAnnIds()) == sorted(originals)
    for ann in instances["annotations"]:
        assert ann["iscrowd"] == 0 and ann["category_id"] == 1
        assert np.array_equal(coco.annToMask(ann), decode(originals[ann["id"]].rle))

    other = client.post("/api/projects", json={"name": "copy"}, headers=manager_headers).json()
    new_ids = upload(client, manager_headers, other["id"], data_root, 2)
    body = members["annotations/instances.json"]
    imported = client.post(f"/api/projects/{other['id']}/import/coco", content=body, headers=manager_headers)
    assert imported.status_code == 201, imported.text
    report = imported.json()
    assert (report["format"], report["imported"], report["already_present"], report["images"]) == (
        "coco",
        len(originals),
        0,
        2,
    )
    assert report["files"] == [{"file": "upload", "masks": len(originals), "images": 2, "skipped": {}}]
    db.expire_all()
    for old, new in zip((a, b), (db.get(Image, i) for i in new_ids)):
        assert new.file_name == old.file_name
        before, after = _live_masks(db, old.id), _live_masks(db, new.id)
        assert len(after) == len(before) > 0
        for x, y in zip(before, after):
            assert np.array_equal(decode(x.rle), decode(y.rle))
            assert (y.source, y.predicted_iou, y.stability_score) == (x.source, x.predicted_iou, x.stability_score)
            assert y.bbox == x.bbox and y.area == x.area and y.project_id == other["id"]

    again = client.post(f"/api/projects/{other['id']}/import/auto", content=body, headers=manager_headers)
    assert (again.json()["format"], again.json()["imported"], again.json()["already_present"]) == (
        "coco",
        0,
        len(originals),
    )


def test_large_project_exports_as_a_job(client, db, project, manager_headers, filled, settings, eager):
    settings.export_stream_max_images = 1
    refused = client.get(f"/api/projects/{project.id}/export?format=sa1b", headers=manager_headers)
    assert refused.status_code == 409 and f"/api/projects/{project.id}/exports" in refused.json()["detail"]

    started = client.post(f"/api/projects/{project.id}/exports", json={"format": "sa1b"}, headers=manager_headers)
    assert started.status_code == 202, started.text
    job = client.get(f"/api/jobs/{started.json()['id']}", headers=manager_headers).json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0, job
    assert job["result"]["storage_key"].startswith(f"exports/{project.id}/")
    download = client.get(job["result"]["download_url"], headers=manager_headers)
    assert download.status_code == 200
    settings.export_stream_max_images = 500
    streamed = client.get(f"/api/projects/{project.id}/export?format=sa1b", headers=manager_headers)
    assert _members(download.content) == _members(streamed.content)

    assert (
        client.post(f"/api/projects/{project.id}/exports", json={"format": "xml"}, headers=manager_headers).status_code
        == 422
    )
    assert client.get(f"/api/projects/{project.id}/export?format=xml", headers=manager_headers).status_code == 422


def _instances(images: list[dict], annotations: list[dict]) -> bytes:
    return json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}
    ).encode()


def test_coco_import_polygons_and_bad_input(client, db, project, manager_headers, data_root):
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    image = db.get(Image, image_id)
    url = f"/api/projects/{project.id}/import/coco"
    images = [{"id": 7, "file_name": image.file_name, "width": image.width, "height": image.height}]
    square = {"id": 1, "image_id": 7, "category_id": 1, "segmentation": [[10, 10, 50, 10, 50, 50, 10, 50]]}
    good_rle = {
        "id": 2,
        "image_id": 7,
        "category_id": 1,
        "segmentation": rle_of(box_mask(image.height, image.width, 0, 0, 5, 5)),
    }

    def count() -> int:
        db.expire_all()
        return db.scalar(select(func.count()).select_from(Mask))

    cases = {
        "unknown image": (
            [*images, {"id": 8, "file_name": "nowhere.jpg"}],
            [square, {"id": 3, "image_id": 8, "segmentation": square["segmentation"]}],
            "upload annotation 3: image 'nowhere.jpg' is not an image of this project",
        ),
        "image not listed": (
            images,
            [good_rle, {"id": 4, "image_id": 99, "segmentation": square["segmentation"]}],
            "upload annotation 4: image_id 99 is not in the file's images",
        ),
        "rle overruns": (
            images,
            [
                good_rle,
                {
                    "id": 5,
                    "image_id": 7,
                    "segmentation": {
                        "size": [image.height, image.width],
                        "counts": [0, image.height * image.width + 10],
                    },
                },
            ],
            "annotation 5",
        ),
        "rle wrong size": (
            images,
            [{"id": 6, "image_id": 7, "segmentation": rle_of(np.ones((4, 4), bool))}],
            "does not match the image size",
        ),
        "bad polygon": (
            images,
            [{"id": 9, "image_id": 7, "segmentation": [[1, 2, 3]]}],
            "annotations[0].segmentation[0]: List should have at least 6 items",
        ),
        "garbage counts": (
            images,
            [{"id": 10, "image_id": 7, "segmentation": {"size": [image.height, image.width], "counts": "\x7f\x7f"}}],
            "annotation 10",
        ),
    }
    for name, (imgs, anns, message) in cases.items():
        response = client.post(url, content=_instances(imgs, anns), headers=manager_headers)
        assert response.status_code == 422, (name, response.text)
        assert message in response.json()["detail"], (name, response.json())
        assert "nothing imported" in response.json()["detail"]
        assert count() == 0, name
    for body in (b"not json", b"[1, 2]", json.dumps({"images": []}).encode()):
        assert client.post(url, content=body, headers=manager_headers).status_code == 422

    ok = client.post(url, content=_instances(images, [square, good_rle]), headers=manager_headers)
    assert ok.status_code == 201, ok.text
    assert ok.json()["imported"] == 2
    masks = {m.provenance["annotation_id"]: m for m in db.scalars(select(Mask))}
    assert masks[1].provenance == {"origin": "imported", "format": "coco", "file": "upload", "annotation_id": 1}
    assert masks[1].area == pytest.approx(40 * 40, rel=0.1) and masks[1].source == "imported"
    assert masks[2].area == 25 and masks[2].bbox == [0.0, 0.0, 5.0, 5.0]


def test_exchange_permissions(client, db, project, manager_headers, make_user, login, filled):
    stranger = login(make_user("manager"))
    assert client.get(f"/api/projects/{project.id}/export", headers=stranger).status_code == 404
    assert client.post(f"/api/projects/{project.id}/import/coco", content=b"{}", headers=stranger).status_code == 404
    annotator = make_user("annotator")
    client.post(f"/api/projects/{project.id}/members", json={"user_id": annotator.id}, headers=manager_headers)
    assert client.post(f"/api/projects/{project.id}/exports", json={}, headers=login(annotator)).status_code == 403
    assert client.get("/api/exports/999999/file", headers=manager_headers).status_code == 404


def test_duplicate_file_names_are_kept_apart(client, db, project, manager_headers, data_root):
    files = [
        ("files", ("same.jpg", (data_root / "grabcut" / "images" / name).read_bytes(), "image/jpeg"))
        for name in GRABCUT_IMAGES[:2]
    ]
    ids = [
        i["id"]
        for i in client.post(f"/api/projects/{project.id}/images", files=files, headers=manager_headers).json()[
            "images"
        ]
    ]
    members = _members(
        client.get(
            f"/api/projects/{project.id}/export?format=coco&include_images=true", headers=manager_headers
        ).content
    )
    images = json.loads(members["annotations/instances.json"])["images"]
    names = sorted(i["file_name"] for i in images)
    assert names == sorted(f"{i}_same.jpg" for i in ids)
    assert [i["original_file_name"] for i in images] == ["same.jpg", "same.jpg"]
    assert sorted(k for k in members if k.startswith("images/")) == [f"images/{n}" for n in names]


def test_export_is_generated_image_by_image(db, project, filled, settings):
    """The archive leaves in pieces (one per image, then the end), so the response streams it."""
    from backend.exchange.archive import export_chunks
    from backend.storage import storage_for

    a, b, _ = filled
    seen: list[float] = []
    chunks = list(export_chunks(db, storage_for(settings), project.id, "sa1b", True, seen.append))
    sizes = [len(c) for c in chunks]
    assert len([s for s in sizes if s]) >= 3 and seen == [0.5, 1.0]
    # The first piece (tar's 10 KiB records may hold back a tail) already carries image A, not B.
    assert f"sa1b/{a.id}.json".encode() in chunks[0] and f"sa1b/{b.id}.json".encode() not in chunks[0]
    assert 0 < sizes[0] < sum(sizes)
    assert sorted(_members(b"".join(chunks))) == sorted(
        [f"sa1b/{a.id}.json", f"images/{a.id}_{a.file_name}", f"sa1b/{b.id}.json", f"images/{b.id}_{b.file_name}"]
    )
    with pytest.raises(ValueError, match="unknown export format"):
        next(export_chunks(db, storage_for(settings), project.id, "xml", False))
