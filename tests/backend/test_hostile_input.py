"""Hostile and absurd input through the real HTTP interface, on SQLite and PostgreSQL: each gets a clear
4xx naming what is wrong (never a 500), nothing is half-stored, and no job dies on one image.

- COCO import bodies with wrong JSON types or unbounded values (422 naming the field, nothing stored);
- images that cannot be annotated (1x40000 strips): refused at upload; one already stored (from before
  the check) is embedded, and a job goes on past an image it cannot process;
- `DELETE /api/images/{id}`: everything of the image goes, the dashboard rollups stay exact, exports
  no longer list it;
- upload names that are not file names (``..``, NUL, 510 bytes): the archive still extracts with
  Python's ``tarfile`` (filter "data") and GNU tar;
- unbounded mask fields: prompts, RLE strings and lists (masks, review fixes), checked before parsing.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, inspect, select, text

from backend.dashboard.rollups import rebuild_rollups
from backend.images.service import image_key
from backend.tables import (
    AnnotationSession,
    DetectorProposal,
    Embedding,
    Image,
    Mask,
    MaskReview,
    Role,
)
from model_server.transforms import preprocess_shape
from tests.backend.jobs_helpers import upload
from tests.backend.stage3_helpers import add_auto_masks, box_mask, rle_of
from tests.backend.test_dashboard_rollups import snapshot


def png(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def count(db, model) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model))


# ---- 1. COCO import bodies ---------------------------------------------------------------------------


@pytest.fixture
def coco_image(client, db, project, manager_headers, data_root) -> Image:
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    return db.get(Image, image_id)


def _coco(image: Image, annotation: dict | None = None, entry: dict | None = None) -> dict:
    return {
        "images": [{"id": 7, "file_name": image.file_name, **(entry or {})}],
        "annotations": [{"id": 1, "image_id": 7, "segmentation": [[10, 10, 50, 10, 50, 50]], **(annotation or {})}],
    }


COCO_CASES = {
    "image_id as a list": (
        dict(annotation={"image_id": [1]}),
        "annotations[0].image_id: Input should be a valid integer",
    ),
    "image id as an object": (dict(entry={"id": {"a": 1}}), "images[0].id: Input should be a valid integer"),
    "file_name as a list": (
        dict(entry={"file_name": ["a.jpg"]}),
        "images[0].file_name: Input should be a valid string",
    ),
    "source as a list": (dict(annotation={"source": ["auto"]}), "annotations[0].source: Input should be 'manual'"),
    "segmentation a number": (
        dict(annotation={"segmentation": 5}),
        "annotations[0].segmentation: must be an RLE object or a list of polygons",
    ),
    "polygon at 1e7": (
        dict(annotation={"segmentation": [[1e7, 1e7, 2e7, 1e7, 2e7, 2e7]]}),
        "annotations[0].segmentation[0][0]: Input should be less than or equal to 100000",
    ),
    "polygon outside the image": (
        dict(annotation={"segmentation": [[10, 10, 5000, 10, 5000, 50]]}),
        "must lie inside the",
    ),
    "polygon zig-zag outline": (
        dict(annotation={"segmentation": [[0, 0, 400, 0] * 2000 + [400, 5]]}),
        "polygon outline of",
    ),
    "rle counts too long": (dict(annotation={"segmentation": {"size": None, "counts": "0" * 2_000_000}}), "counts has"),
}


@pytest.mark.parametrize("case", COCO_CASES)
def test_coco_import_refuses_bad_bodies_naming_the_field(client, db, project, manager_headers, coco_image, case):
    changes, message = COCO_CASES[case]
    body = _coco(coco_image, **changes)
    segmentation = body["annotations"][0]["segmentation"]
    if isinstance(segmentation, dict):
        segmentation["size"] = [coco_image.height, coco_image.width]
    response = client.post(f"/api/projects/{project.id}/import/coco", content=json.dumps(body), headers=manager_headers)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"], response.json()
    assert count(db, Mask) == 0


@pytest.mark.parametrize("number", ["1" * 401, "1" * 5000, "1e400"])
def test_coco_import_refuses_numbers_no_float_holds(client, db, project, manager_headers, coco_image, number):
    body = json.dumps(_coco(coco_image, {"predicted_iou": 0.5})).replace("0.5", number)
    response = client.post(f"/api/projects/{project.id}/import/coco", content=body, headers=manager_headers)
    assert response.status_code == 422, response.text
    assert "predicted_iou" in response.json()["detail"] or "Invalid JSON" in response.json()["detail"]
    assert count(db, Mask) == 0


# ---- 2. Images that cannot be annotated; jobs that meet a bad image --------------------------------------


@pytest.mark.parametrize("size", [(40000, 1), (1, 50000), (3000, 1), (650, 10)])
def test_upload_refuses_strips_that_cannot_be_annotated(client, db, project, manager_headers, size):
    response = client.post(
        f"/api/projects/{project.id}/images",
        headers=manager_headers,
        files=[("files", ("strip.png", png(*size), "image/png"))],
    )
    assert response.status_code == 400, response.text
    assert f"{size[0]}x{size[1]} pixels cannot be annotated" in response.json()["detail"]
    assert count(db, Image) == 0
    ok = client.post(
        f"/api/projects/{project.id}/images",
        headers=manager_headers,
        files=[("files", ("wide.png", png(640, 10), "image/png"))],
    )  # 64:1 is still fine
    assert ok.status_code == 201, ok.text


def _store_directly(db, settings, project, data: bytes, name: str, width: int, height: int) -> Image:
    """An image row as an older version stored it (before the upload checks), bytes as given."""
    sha = f"{abs(hash(data)):064d}"[-64:]
    key = image_key(sha, "png")
    path = settings.storage_path / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    image = Image(
        project_id=project.id,
        file_name=name,
        storage_key=key,
        sha256=sha,
        width=width,
        height=height,
        size_bytes=len(data),
    )
    db.add(image)
    db.commit()
    return image


def test_embed_job_embeds_a_strip_and_goes_on_past_a_broken_image(
    client, db, project, manager_headers, data_root, settings, eager
):
    assert preprocess_shape(1, 3000) == (1, 1024) and preprocess_shape(40000, 1) == (1024, 1)
    strip = _store_directly(db, settings, project, png(3000, 1), "strip.png", 3000, 1)
    broken = _store_directly(db, settings, project, b"not an image at all", "broken.png", 20, 20)
    (good,) = upload(client, manager_headers, project.id, data_root, 1)

    response = client.post(f"/api/projects/{project.id}/embed", headers=manager_headers)
    assert response.status_code == 202, response.text
    job = client.get(f"/api/jobs/{response.json()['id']}", headers=manager_headers).json()
    assert job["status"] == "succeeded", job
    assert job["result"]["embedded"] == 2 and job["result"]["failed"] == 1
    [failure] = job["result"]["failed_images"]
    assert failure["image_id"] == broken.id and "not a readable image" in failure["error"]
    assert job["message"] == "done, 1 images failed"
    db.expire_all()
    rows = {e.image_id: e for e in db.scalars(select(Embedding))}
    assert sorted(rows) == sorted([strip.id, good])
    assert (rows[strip.id].input_h, rows[strip.id].input_w) == (1, 1024)
    served = client.get(f"/api/images/{strip.id}/embedding", headers=manager_headers)
    assert served.status_code == 200


# ---- 3. Deleting an image --------------------------------------------------------------------------------


def test_foreign_keys_to_images_and_masks_never_block_a_delete(db):
    """Every foreign key to images or masks in the migrated schema cascades or nulls: deleting an image
    can never fail on, or leave behind, a row of any table (including ones added later)."""
    schema = inspect(db.connection())
    found = []
    for table in schema.get_table_names():
        for fk in schema.get_foreign_keys(table):
            if fk["referred_table"] in ("images", "masks"):
                found.append((table, fk["referred_table"], (fk.get("options") or {}).get("ondelete", "").upper()))
    assert len(found) >= 9, found
    assert all(action in ("CASCADE", "SET NULL") for _, _, action in found), found


def test_delete_image_removes_everything_of_it_and_keeps_the_rollups_exact(
    client, db, project, manager, manager_headers, make_user, login, data_root, settings
):
    a_id, b_id = upload(client, manager_headers, project.id, data_root, 2)
    a, b = db.get(Image, a_id), db.get(Image, b_id)
    for image in (a, b):
        saved = client.post(
            f"/api/images/{image.id}/masks",
            headers=manager_headers,
            json={
                "client_id": f"m-{image.id}",
                "rle": rle_of(box_mask(image.height, image.width, 5, 5, 40, 60)),
                "seconds_spent": 3.5,
                "clicks": 2,
            },
        )
        assert saved.status_code == 201, saved.text
        add_auto_masks(db, db.get(Image, image.id), [box_mask(image.height, image.width, 50, 50, 90, 90)])
    pending = db.scalar(select(Mask.id).where(Mask.image_id == a_id, Mask.source == "auto"))
    assert (
        client.post(f"/api/masks/{pending}/review", json={"decision": "accept"}, headers=manager_headers).status_code
        == 201
    )
    assert client.get(f"/api/images/{a_id}/embedding", headers=manager_headers).status_code == 200
    assert client.get(f"/api/images/{a_id}/thumbnail", headers=manager_headers).status_code == 200
    db.add_all(
        [
            AnnotationSession(user_id=manager.id, image_id=a_id, seconds_active=4.0),
            DetectorProposal(image_id=a_id, project_id=project.id, boxes=1, masks=0),
        ]
    )
    db.commit()
    embedding_file = settings.storage_path / db.scalar(select(Embedding.storage_key).where(Embedding.image_id == a_id))
    image_file = settings.storage_path / a.storage_key
    thumbnail = next((settings.storage_path / "thumbnails").rglob(f"{a.sha256}.jpg"))
    # B's bytes in another project share B's stored file: it must stay for that image.
    other = client.post("/api/projects", json={"name": "other"}, headers=manager_headers).json()
    copy = client.post(
        f"/api/projects/{other['id']}/images",
        headers=manager_headers,
        files=[("files", ("copy.jpg", (settings.storage_path / b.storage_key).read_bytes(), "image/jpeg"))],
    )
    assert copy.status_code == 201, copy.text
    shared_with = copy.json()["images"][0]["id"]
    # ...and so does its embedding object: one per encoder and content, shared by both images' rows.
    for image_id in (b_id, shared_with):
        assert client.get(f"/api/images/{image_id}/embedding", headers=manager_headers).status_code == 200
    shared_embedding = db.scalar(select(Embedding.storage_key).where(Embedding.image_id == shared_with))
    assert shared_embedding == db.scalar(select(Embedding.storage_key).where(Embedding.image_id == b_id))

    annotator = make_user(Role.annotator)
    client.post(f"/api/projects/{project.id}/members", json={"user_id": annotator.id}, headers=manager_headers)
    assert client.delete(f"/api/images/{a_id}", headers=login(annotator)).status_code == 403
    assert client.delete(f"/api/images/{a_id}", headers=login(make_user(Role.manager))).status_code == 404
    assert count(db, Image) == 3

    response = client.delete(f"/api/images/{b_id}", headers=manager_headers)  # shares its file
    assert response.status_code == 204, response.text
    response = client.delete(f"/api/images/{a_id}", headers=manager_headers)
    assert response.status_code == 204, response.text
    assert client.get(f"/api/images/{a_id}", headers=manager_headers).status_code == 404
    assert client.delete(f"/api/images/{a_id}", headers=manager_headers).status_code == 404
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(MaskReview).where(MaskReview.project_id == project.id)) == 0
    for table in (
        "masks",
        "embeddings",
        "annotation_sessions",
        "detector_proposals",
        "image_mask_totals",
        "image_mask_counts",
    ):
        assert db.execute(text(f"SELECT count(*) FROM {table} WHERE image_id IN ({a_id}, {b_id})")).scalar() == 0
    assert not embedding_file.exists() and not image_file.exists() and not thumbnail.exists()
    assert (settings.storage_path / db.get(Image, shared_with).storage_key).is_file()
    assert (settings.storage_path / shared_embedding).is_file()

    incremental = snapshot(db)
    rebuild_rollups(db, project.id)
    db.commit()
    assert snapshot(db) == incremental
    dashboard = client.get(f"/api/projects/{project.id}/dashboard", headers=manager_headers)
    assert dashboard.status_code == 200, dashboard.text
    export = client.get(f"/api/projects/{project.id}/export?format=coco", headers=manager_headers)
    with tarfile.open(fileobj=io.BytesIO(export.content)) as tar:
        instances = json.load(tar.extractfile("annotations/instances.json"))
    assert instances["images"] == [] and instances["annotations"] == []


# ---- 4. Upload names in archives -------------------------------------------------------------------------

HOSTILE_NAMES = ["..", "\x00.png", "ü" * 255, "same.jpg", "same.jpg"]


@pytest.mark.parametrize("fmt", ["sa1b", "coco"])
def test_archives_of_hostile_names_extract_everywhere(client, db, project, manager_headers, tmp_path, fmt):
    parts = [
        b'--B\r\nContent-Disposition: form-data; name="files"; filename="' + name.encode() + b'"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png(40, 30, seed) + b"\r\n"
        for seed, name in enumerate(HOSTILE_NAMES)
    ]
    response = client.post(
        f"/api/projects/{project.id}/images",
        content=b"".join(parts) + b"--B--\r\n",  # raw: a
        headers={**manager_headers, "Content-Type": "multipart/form-data; boundary=B"},
    )  # NUL too
    assert response.status_code == 201, response.text
    stored = {i["id"]: i["file_name"] for i in response.json()["images"]}
    assert sorted(stored.values()) == sorted(["unnamed", ".png", "ü" * 255, "same.jpg", "same.jpg"])
    legacy = db.get(Image, min(stored))  # a name stored before names were cleaned (PostgreSQL refuses NUL)
    legacy.file_name = "../../x/.."
    db.commit()
    stored[legacy.id] = legacy.file_name

    archive = client.get(f"/api/projects/{project.id}/export?format={fmt}&include_images=true", headers=manager_headers)
    assert archive.status_code == 200, archive.text
    (tmp_path / "export.tar").write_bytes(archive.content)
    with tarfile.open(tmp_path / "export.tar") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "python", filter="data")
    images = [n for n in names if n.startswith("images/")]
    assert len(images) == len(set(images)) == len(stored)
    assert all(len(n.encode()) <= 100 and n.isascii() for n in names), names
    if shutil.which("tar"):
        (tmp_path / "gnu").mkdir()
        done = subprocess.run(
            ["tar", "-xf", str(tmp_path / "export.tar"), "-C", str(tmp_path / "gnu")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert sorted(
            str(p.relative_to(tmp_path / "gnu")) for p in (tmp_path / "gnu").rglob("*") if p.is_file()
        ) == sorted(n for n in names)

    extracted = tmp_path / "python"
    if fmt == "coco":
        entries = json.loads((extracted / "annotations" / "instances.json").read_text())["images"]
    else:
        entries = [json.loads(p.read_text())["image"] for p in (extracted / "sa1b").glob("*.json")]
        entries = [{**e, "id": e["image_id"]} for e in entries]
    assert {e["id"]: e["original_file_name"] for e in entries} == stored
    for entry in entries:
        assert (extracted / "images" / entry["file_name"]).is_file()
        assert entry["file_name"].startswith(f"{entry['id']}_")


# ---- 5. Unbounded mask fields ----------------------------------------------------------------------------


@pytest.fixture
def small_image(client, db, project, manager_headers) -> Image:
    response = client.post(
        f"/api/projects/{project.id}/images",
        headers=manager_headers,
        files=[("files", ("small.png", png(64, 48), "image/png"))],
    )
    assert response.status_code == 201, response.text
    return db.get(Image, response.json()["images"][0]["id"])


FRONTEND_PROMPTS = {
    "points": [{"x": 3.5, "y": 40.25, "label": 1}, {"x": 0, "y": 0, "label": 0}],
    "box": [1, 2, 30.5, 40],
    "candidate": 2,
    "strokes": 1,
}
POINT = {"x": 1, "y": 1, "label": 1}
PROMPT_CASES = {
    "30 MB of an unknown key": ({"points": [], "notes": "x" * (30 << 20)}, "prompts.notes"),
    "too many points": ({"points": [POINT] * 501}, "prompts.points"),
    "a point far outside": ({"points": [{"x": 1e12, "y": 1, "label": 1}]}, "prompts.points.0.x"),
    "a negative point": ({"points": [{"x": -5, "y": 1, "label": 1}]}, "prompts.points.0.x"),
    "a label of 7": ({"points": [{"x": 1, "y": 1, "label": 7}]}, "prompts.points.0.label"),
    "a box of three": ({"box": [1, 2, 3]}, "prompts.box"),
    "absurd strokes": ({"strokes": 10**9}, "prompts.strokes"),
}


@pytest.mark.parametrize("case", PROMPT_CASES)
def test_mask_prompts_are_bounded(client, db, manager_headers, small_image, case):
    prompts, location = PROMPT_CASES[case]
    rle = rle_of(box_mask(small_image.height, small_image.width, 1, 1, 9, 9))
    response = client.post(
        f"/api/images/{small_image.id}/masks",
        headers=manager_headers,
        json={"client_id": "p-1", "rle": rle, "prompts": prompts},
    )
    assert response.status_code == 422, response.text[:500]
    assert response.json()["detail"].startswith(location), response.json()["detail"][:500]
    assert count(db, Mask) == 0


def test_what_the_annotate_page_sends_is_kept(client, manager_headers, small_image):
    rle = rle_of(box_mask(small_image.height, small_image.width, 1, 1, 9, 9))
    response = client.post(
        f"/api/images/{small_image.id}/masks",
        headers=manager_headers,
        json={"client_id": "p-2", "rle": rle, "prompts": FRONTEND_PROMPTS},
    )
    assert response.status_code == 201, response.text
    assert response.json()["prompts"] == FRONTEND_PROMPTS


def test_mask_rle_longer_than_the_image_allows_is_refused_before_parsing(client, db, manager_headers, small_image):
    h, w = small_image.height, small_image.width
    url = f"/api/images/{small_image.id}/masks"
    cases = [
        ({"size": [h, w], "counts": "1" * (8 << 20)}, f"has {8 << 20} characters; a mask of a {h}x{w} image"),
        ({"size": [h, w], "counts": [1] * (h * w + 2)}, f"has {h * w + 2} runs"),
        ({"size": [h, w], "counts": "P" * 7 + "1"}, "longer than 7 characters"),
    ]
    for rle, message in cases:
        response = client.post(url, headers=manager_headers, json={"client_id": "r-1", "rle": rle})
        assert response.status_code == 422, response.text[:300]
        assert message in response.json()["detail"], response.json()
    for rle in (
        {"size": [h, w, 1], "counts": "0"},
        {"size": [True, w], "counts": "0"},
        {"size": [h, w], "counts": [1.5, 2]},
        {"size": [0, w], "counts": "0"},
    ):
        response = client.post(url, headers=manager_headers, json={"client_id": "r-1", "rle": rle})
        assert response.status_code == 422 and response.json()["detail"].startswith("rle."), (rle, response.text)
    assert count(db, Mask) == 0


def test_review_fix_rle_is_bounded_too(client, db, manager_headers, small_image):
    add_auto_masks(db, small_image, [box_mask(small_image.height, small_image.width, 2, 2, 20, 20)])
    mask_id = db.scalar(select(Mask.id))
    h, w = small_image.height, small_image.width
    response = client.post(
        f"/api/masks/{mask_id}/review",
        headers=manager_headers,
        json={"decision": "fix", "rle": {"size": [h, w], "counts": "1" * (4 << 20)}},
    )
    assert response.status_code == 422, response.text[:300]
    assert "characters" in response.json()["detail"]
    assert db.scalar(select(func.count()).select_from(MaskReview)) == 0
