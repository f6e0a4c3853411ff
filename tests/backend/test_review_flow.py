"""Review queue, decisions and the quality summary against hand-built auto masks (SQLite + PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from backend.auto.service import ReviewSampling
from backend.tables import Image, Mask, MaskReview, Role
from tests.backend.jobs_helpers import upload
from tests.backend.stage3_helpers import add_auto_masks, box_mask, decode, rle_of


@pytest.fixture
def reviewed_image(client, db, project, manager_headers, data_root):
    """One uploaded image with four pending auto masks (review_fraction 1.0): boxes of 50x50 pixels."""
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    image = db.get(Image, image_id)
    h, w = image.height, image.width
    boxes = [(10, 10, 60, 60), (10, 100, 60, 150), (100, 10, 150, 60), (100, 100, 150, 150)]
    stored = add_auto_masks(db, image, [box_mask(h, w, *b) for b in boxes], fraction=1.0, model_version_id=5)
    assert stored.masks == 4 and stored.pending_review == 4
    return image


def test_review_next_accept_fix_reject_and_summary(client, db, project, manager, make_user, login, reviewed_image):
    annotator = make_user(Role.annotator)
    client.post(
        f"/api/projects/{project.id}/members", json={"user_id": annotator.id}, headers=login(manager)
    ).raise_for_status()
    headers = login(annotator)
    h, w = reviewed_image.height, reviewed_image.width
    ids = list(db.scalars(select(Mask.id).where(Mask.image_id == reviewed_image.id).order_by(Mask.id)))

    item = client.get(f"/api/projects/{project.id}/review/next", headers=headers)
    assert item.status_code == 200, item.text
    assert item.json()["mask"]["id"] == ids[0] and item.json()["pending"] == 4
    assert item.json()["image"]["id"] == reviewed_image.id and item.json()["mask"]["source"] == "auto"

    skipped = client.get(f"/api/projects/{project.id}/review/next?after={ids[0]}", headers=headers).json()
    assert skipped["mask"]["id"] == ids[1] and skipped["pending"] == 4
    accepted = client.post(f"/api/masks/{ids[0]}/review", json={"decision": "accept"}, headers=headers)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["iou"] == 1.0 and accepted.json()["fixed_mask"] is None

    # A fix 5 pixels wider: IoU 2500/2750; another shifted by half its width: IoU 1250/3750.
    close = box_mask(h, w, 10, 100, 60, 155)
    fixed = client.post(f"/api/masks/{ids[1]}/review", json={"decision": "fix", "rle": rle_of(close)}, headers=headers)
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["iou"] == pytest.approx(2500 / 2750)
    correction = fixed.json()["fixed_mask"]
    assert correction["source"] == "manual" and correction["author_id"] == annotator.id
    assert correction["area"] == 2750 and correction["bbox"] == [100.0, 10.0, 55.0, 50.0]
    assert np.array_equal(decode(correction["rle"]), close)
    far = box_mask(h, w, 100, 35, 150, 85)
    assert client.post(
        f"/api/masks/{ids[2]}/review", json={"decision": "fix", "rle": rle_of(far)}, headers=headers
    ).json()["iou"] == pytest.approx(1250 / 3750)
    assert (
        client.post(f"/api/masks/{ids[3]}/review", json={"decision": "reject"}, headers=headers).json()["iou"] is None
    )

    assert client.get(f"/api/projects/{project.id}/review/next", headers=headers).status_code == 204
    again = client.post(f"/api/masks/{ids[0]}/review", json={"decision": "reject"}, headers=headers)
    assert again.status_code == 409 and "not in the review queue" in again.json()["detail"]

    db.expire_all()
    rows = {m.id: m for m in db.scalars(select(Mask).where(Mask.image_id == reviewed_image.id))}
    assert [rows[i].review_status for i in ids] == ["accepted", "fixed", "fixed", "rejected"]
    assert [rows[i].prefill_outcome for i in ids] == ["kept", "corrected", "corrected", "deleted"]
    assert rows[ids[0]].deleted_at is None and all(rows[i].deleted_at is not None for i in ids[1:])
    assert rows[correction["id"]].parent_mask_id == ids[1]
    corrections = sorted(m.id for m in rows.values() if m.parent_mask_id in (ids[1], ids[2]))
    live = client.get(f"/api/images/{reviewed_image.id}/masks", headers=headers).json()
    assert sorted(m["id"] for m in live) == [ids[0], *corrections] and correction["id"] in corrections

    summary = client.get(f"/api/projects/{project.id}/review/summary", headers=headers).json()
    assert summary == {
        "auto_masks": 4,
        "sampled": 4,
        "pending": 0,
        "accepted": 1,
        "fixed": 2,
        "rejected": 1,
        "reviewed": 4,
        "iou_threshold": 0.9,
        "above_threshold": 2,
        "share_above_threshold": 0.5,
        "mean_iou_fixed": pytest.approx((2500 / 2750 + 1250 / 3750) / 2),
        "model_version_ids": [5],
    }


def test_review_bad_input(client, db, project, manager_headers, make_user, login, reviewed_image):
    mask_id = db.scalar(select(Mask.id).where(Mask.image_id == reviewed_image.id).order_by(Mask.id))
    url = f"/api/masks/{mask_id}/review"
    assert client.post(url, json={"decision": "fix"}, headers=manager_headers).status_code == 422
    rle = rle_of(np.ones((reviewed_image.height, reviewed_image.width), bool))
    assert client.post(url, json={"decision": "accept", "rle": rle}, headers=manager_headers).status_code == 422
    assert client.post(url, json={"decision": "maybe"}, headers=manager_headers).status_code == 422
    wrong_size = rle_of(np.ones((10, 10), bool))
    response = client.post(url, json={"decision": "fix", "rle": wrong_size}, headers=manager_headers)
    assert response.status_code == 422 and "does not match the image size" in response.json()["detail"]
    stranger = login(make_user(Role.annotator))
    assert client.post(url, json={"decision": "accept"}, headers=stranger).status_code == 404
    assert client.get(f"/api/projects/{project.id}/review/next", headers=stranger).status_code == 404
    assert (
        client.post("/api/masks/999999/review", json={"decision": "accept"}, headers=manager_headers).status_code == 404
    )
    # A manual mask is never in the queue.
    manual = client.post(
        f"/api/images/{reviewed_image.id}/masks", headers=manager_headers, json={"client_id": "m1", "rle": rle}
    ).json()
    assert (
        client.post(
            f"/api/masks/{manual['id']}/review", json={"decision": "accept"}, headers=manager_headers
        ).status_code
        == 409
    )
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(MaskReview)) == 0
    summary = client.get(f"/api/projects/{reviewed_image.project_id}/review/summary", headers=manager_headers).json()
    assert summary["reviewed"] == 0 and summary["share_above_threshold"] is None and summary["pending"] == 4


def test_review_sampling_fraction_is_seeded_and_reproducible(client, db, project, manager_headers, data_root):
    sampling = ReviewSampling(0.25, seed=7)
    picks = [sampling.picks(image_id, index) for image_id in range(50) for index in range(200)]
    assert 0.23 < sum(picks) / len(picks) < 0.27
    assert picks == [ReviewSampling(0.25, 7).picks(i, k) for i in range(50) for k in range(200)]
    assert picks != [ReviewSampling(0.25, 8).picks(i, k) for i in range(50) for k in range(200)]
    assert not any(ReviewSampling(0.0, 0).picks(1, k) for k in range(1000))
    assert all(ReviewSampling(1.0, 0).picks(1, k) for k in range(1000))

    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    image = db.get(Image, image_id)
    masks = [box_mask(image.height, image.width, 2 * k, 0, 2 * k + 2, 10) for k in range(100)]
    stored = add_auto_masks(db, image, masks, fraction=0.25, seed=7)
    expected = sum(ReviewSampling(0.25, 7).picks(image.id, k) for k in range(100))
    assert stored.pending_review == expected
    pending = db.scalar(select(func.count()).select_from(Mask).where(Mask.review_status == "pending"))
    assert pending == expected and 10 < expected < 45


def test_review_sampling_reads_the_project_settings(db, project):
    project.settings = {"review_fraction": 0.5, "review_seed": 3}
    assert ReviewSampling.of(project) == ReviewSampling(0.5, 3)
    project.settings = {"review_fraction": 1.5}  # stored before settings were validated: the default applies
    assert ReviewSampling.of(project).fraction == 0.02
