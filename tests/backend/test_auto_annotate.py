"""The fully automatic stage end to end: `POST /auto-annotate` → Celery task → masks in the database.

Celery runs eagerly (the task executes in the test process through Celery's ``apply``), as in the
embedding tests: there is no broker-backed worker in the test suite. The model is the install's
untrained vit_t (seeded random weights), run by our `model_server.amg` generator through
`ModelService.automatic_masks` (in process). Random weights give few confident, stable masks, so the jobs use
LOW thresholds (pred_iou_thresh 0, stability_score_thresh 0) and a 4x4 grid; typically about one
mask per image survives NMS.

The generator takes ~20 s per image on the shared 2-core CPU, so its real output is computed once
per (weights, image, parameters) and memoised for the session (`tests.backend.model_memo`); every test still
runs the real task, the real storage transaction and the real database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_util
from sqlalchemy import func, select
from sqlalchemy.orm import object_session

from backend.auto import service as auto_service
from backend.clients.model_server import model_service
from backend.model_versions.service import ensure_default_version
from backend.storage import storage_for
from backend.tables import Image, Job, Mask
from tests.backend.jobs_helpers import upload
from tests.backend.model_memo import MemoService, memo_models_fixture, remembered_records  # noqa: F401

LOW = {"points_per_side": 4, "points_per_batch": 16, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(autouse=True)
def untrained_version(db, settings, memo_models):
    """The install's untrained vit_t version, as `ensure_default_version` creates it (its files made
    once per session)."""
    storage = storage_for(settings)
    return ensure_default_version(db, storage, model_service(settings, storage), settings)


@pytest.fixture
def memo_generator(memo_models) -> list[str]:
    """The sha256 of each image given to the automatic generator (run once per weights, image and
    parameters per session)."""
    return memo_models.generator


def _records_for(image_sha: str) -> list[dict[str, Any]]:
    return remembered_records(image_sha, _generator_kwargs(LOW))


def _generator_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    from backend.auto.schemas import AutoParams

    return AutoParams(**params).generator_kwargs()


def _start(client, project_id, headers, params) -> dict[str, Any]:
    response = client.post(f"/api/projects/{project_id}/auto-annotate", json=params, headers=headers)
    assert response.status_code == 202, response.text
    return client.get(f"/api/jobs/{response.json()['id']}", headers=headers).json()


def _masks(db, image_id: int) -> list[Mask]:
    db.expire_all()
    return list(db.scalars(select(Mask).where(Mask.image_id == image_id).order_by(Mask.id)))


def test_auto_annotate_stores_generator_masks_and_a_rerun_adds_nothing(
    client, db, project, manager_headers, data_root, eager, memo_generator
):
    project.settings = {"review_fraction": 1.0}
    db.commit()
    ids = upload(client, manager_headers, project.id, data_root, 2)

    job = _start(client, project.id, manager_headers, LOW)
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0 and job["kind"] == "auto"
    result = job["result"]
    assert result["total"] == 2 and result["processed"] == 2 and result["already_done"] == 0
    assert result["params"]["points_per_side"] == 4 and result["params"]["max_mask_fraction"] == 0.95
    assert len(memo_generator) == 2

    stored_total = 0
    for image_id, image_sha in zip(ids, memo_generator):
        image = db.get(Image, image_id)
        db.refresh(image)
        assert "fully_automatic" in image.stage_done
        records = [r for r in _records_for(image_sha) if r["area"] < 0.95 * image.height * image.width]
        masks = _masks(db, image_id)
        assert len(masks) == len(records)
        for mask, record in zip(masks, records):
            assert mask.source == "auto" and mask.stage == "fully_automatic" and mask.review_status == "pending"
            assert mask.provenance == {
                "origin": "auto",
                "model_version_id": result["model_version_id"],
                "job_id": job["id"],
            }
            assert mask.rle == {"size": [image.height, image.width], "counts": record["segmentation"]["counts"]}
            encoded = {"size": mask.rle["size"], "counts": mask.rle["counts"].encode()}
            assert mask.area == record["area"] == int(mask_util.area(encoded))
            # COCO's box (pycocotools toBbox, width = x_max - x_min + 1) like every other mask; the
            # generator (as the official one) reports x_max - x_min.
            assert mask.bbox == list(mask_util.toBbox(encoded))
            assert mask.bbox[:2] == pytest.approx(record["bbox"][:2])
            assert np.subtract(mask.bbox[2:], record["bbox"][2:]).tolist() in ([0, 0], [1, 1], [1, 0], [0, 1])
            assert mask.predicted_iou == pytest.approx(record["predicted_iou"])
            assert mask.stability_score == pytest.approx(record["stability_score"])
            assert np.allclose(mask.point_coords, record["point_coords"])
            assert mask.crop_box == pytest.approx(record["crop_box"])
        stored_total += len(masks)
    assert result["masks"] == stored_total and result["pending_review"] == stored_total
    assert stored_total > 0, "the untrained model found no mask at all with thresholds 0 (unexpected)"
    summary = client.get(f"/api/projects/{project.id}/review/summary", headers=manager_headers).json()
    assert summary["pending"] == summary["sampled"] == stored_total
    assert summary["model_version_ids"] == [result["model_version_id"]]

    again = _start(client, project.id, manager_headers, LOW)
    assert again["id"] != job["id"] and again["status"] == "succeeded"
    assert again["result"]["processed"] == 0 and again["result"]["already_done"] == 2 and again["result"]["masks"] == 0
    assert len(memo_generator) == 2  # the generator did not even run
    assert db.scalar(select(func.count()).select_from(Mask)) == stored_total


def test_crash_mid_job_leaves_whole_images_and_the_rerun_completes(
    client, db, project, manager_headers, data_root, eager, memo_generator, monkeypatch
):
    ids = upload(client, manager_headers, project.id, data_root, 2)
    memoised = MemoService.automatic_masks

    # 1. The model fails on the second image: recorded on it, the job goes on (and ends) without it.
    def crash_on_second(self, model, image_key, params):
        if len(memo_generator) == 1:
            raise RuntimeError("simulated worker crash")
        return memoised(self, model, image_key, params)

    monkeypatch.setattr(MemoService, "automatic_masks", crash_on_second)
    partial = _start(client, project.id, manager_headers, LOW)
    assert partial["status"] == "succeeded" and partial["message"] == "done, 1 images failed", partial
    assert partial["result"]["processed"] == 1 and partial["result"]["failed_images"] == [
        {"image_id": ids[1], "error": "RuntimeError: simulated worker crash"}
    ]
    first = _masks(db, ids[0])
    first_records = [
        r
        for r in _records_for(memo_generator[0])
        if r["area"] < 0.95 * db.get(Image, ids[0]).height * db.get(Image, ids[0]).width
    ]
    assert [m.rle for m in first] == [{**r["segmentation"]} for r in first_records]
    assert _masks(db, ids[1]) == []

    # 2. The worker dies inside the second image's transaction, after its masks reached the database.
    monkeypatch.setattr(MemoService, "automatic_masks", memoised)
    real_mark_done = auto_service.mark_done

    def crash_in_transaction(image):
        object_session(image).flush()
        raise RuntimeError("simulated crash before commit")

    monkeypatch.setattr(auto_service, "mark_done", crash_in_transaction)
    failed = _start(client, project.id, manager_headers, LOW)  # its only image failed: so did the job
    assert failed["status"] == "failed" and "simulated crash before commit" in failed["error"]
    assert _masks(db, ids[1]) == []
    second = db.get(Image, ids[1])
    db.refresh(second)
    assert "fully_automatic" not in second.stage_done

    # 3. A new job continues where the crashed ones stopped.
    monkeypatch.setattr(auto_service, "mark_done", real_mark_done)
    done = _start(client, project.id, manager_headers, LOW)
    assert done["status"] == "succeeded", done
    assert done["result"]["already_done"] == 1 and done["result"]["processed"] == 1
    assert [m.id for m in _masks(db, ids[0])] == [m.id for m in first]
    image = db.get(Image, ids[1])
    expected = [r for r in _records_for(memo_generator[-1]) if r["area"] < 0.95 * image.height * image.width]
    assert [m.rle["counts"] for m in _masks(db, ids[1])] == [r["segmentation"]["counts"] for r in expected]


def test_an_image_without_masks_is_done_with_none(
    client, db, project, manager_headers, data_root, eager, memo_generator
):
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    # Nothing passes a predicted-IoU threshold of 1.0 (the generator keeps IoU > threshold).
    job = _start(client, project.id, manager_headers, {**LOW, "pred_iou_thresh": 1.0})
    assert job["status"] == "succeeded", job
    assert job["result"]["processed"] == 1 and job["result"]["masks"] == 0
    image = db.get(Image, image_id)
    db.refresh(image)
    assert "fully_automatic" in image.stage_done and _masks(db, image_id) == []


def test_masks_covering_most_of_the_image_are_dropped(
    client, db, project, manager_headers, data_root, eager, memo_generator
):
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    job = _start(client, project.id, manager_headers, {**LOW, "max_mask_fraction": 0.001})
    assert job["status"] == "succeeded", job
    records = _records_for(memo_generator[0])
    assert job["result"]["masks"] == 0 and job["result"]["dropped_large"] == len(records) > 0
    assert _masks(db, image_id) == []


@pytest.mark.parametrize(
    "params, message",
    [
        ({"points_per_side": 0}, "points_per_side"),
        ({"points_per_side": -3}, "points_per_side"),
        ({"pred_iou_thresh": 1.5}, "pred_iou_thresh"),
        ({"stability_score_thresh": -0.1}, "stability_score_thresh"),
        ({"box_nms_thresh": 2}, "box_nms_thresh"),
        ({"max_mask_fraction": 0}, "max_mask_fraction"),
        ({"crop_overlap_ratio": 1.0}, "crop_overlap_ratio"),
        ({"points_per_side": 4, "crop_n_layers": 2, "crop_n_points_downscale_factor": 4}, "no points"),
        ({"points_per_sides": 32}, "points_per_sides"),
        ({"points_per_side": "many"}, "points_per_side"),
    ],
)
def test_absurd_parameters_are_refused_before_any_job(client, db, project, manager_headers, params, message):
    response = client.post(f"/api/projects/{project.id}/auto-annotate", json=params, headers=manager_headers)
    assert response.status_code == 422, response.text
    assert message in response.text
    assert db.scalar(select(func.count()).select_from(Job)) == 0


def test_who_may_start_it(client, db, project, manager, manager_headers, make_user, login):
    annotator = make_user("annotator")
    client.post(f"/api/projects/{project.id}/members", json={"user_id": annotator.id}, headers=manager_headers)
    assert (
        client.post(f"/api/projects/{project.id}/auto-annotate", json={}, headers=login(annotator)).status_code == 403
    )
    assert (
        client.post(
            f"/api/projects/{project.id}/auto-annotate", json={}, headers=login(make_user("manager"))
        ).status_code
        == 404
    )
    assert db.scalar(select(func.count()).select_from(Job)) == 0


def test_a_model_service_that_is_down_fails_the_job_at_once(
    client, db, project, manager_headers, data_root, eager, settings
):
    """Not one failure per image: the first image's `ModelServiceError` ends the job with its message."""
    upload(client, manager_headers, project.id, data_root, 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        settings.model_server_url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    job = _start(client, project.id, manager_headers, LOW)
    assert job["status"] == "failed" and settings.model_server_url in job["error"], job
    assert db.scalar(select(func.count()).select_from(Mask)) == 0
