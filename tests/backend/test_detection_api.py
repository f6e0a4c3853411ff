"""The semi-automatic stage end to end through the API, on SQLite and PostgreSQL.

Stage-1 masks (davis345 objects) saved through the masks API → ``POST /detector/train`` (eager
Celery: the task runs in the test process, as in the embedding and auto tests) → a ready detector
version with held-out metrics → the stage gate opens → ``POST /detector/propose`` pre-fills every
image not yet done in stage 2 → the masks are visible through ``GET /api/images/{id}/masks`` as
source ``detector`` → the annotator's correction / deletion / "done" are recorded as corrected /
deleted / kept. The model is the install's untrained vit_t (seeded random weights), so the detector's
quality is not judged here (see tests/model_server/test_detector.py): proposals use thresholds of 0
and at most 3 boxes per image so that every stored-mask path runs.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from backend.detection.service import MIN_TRAIN_IMAGES
from backend.detection.tasks import train_version
from backend.jobs import service as jobs
from backend.jobs.runner import run_job
from backend.masks.split import split_images
from backend.tables import DetectorVersion, Job, Mask, ModelStatus, Role
from tests.backend.model_memo import memo_models_fixture  # noqa: F401 - the encoder runs once per (weights, image)
from tests.backend.stage1_objects import SMALL, STAGE1, davis_images, mask_rle
from tests.backend.test_auto_annotate import untrained_version


def _job(client, headers, response) -> dict:
    assert response.status_code == 202, response.text
    return client.get(f"/api/jobs/{response.json()['id']}", headers=headers).json()


def test_stage1_masks_train_propose_and_prefill_telemetry(
    client, db, project, manager, manager_headers, make_user, login, data_root, eager
):
    pid, root = project.id, data_root / "davis345"
    davis = davis_images(data_root)
    files = [("files", (Path(name).name, (root / name).read_bytes(), "image/jpeg")) for name, _ in davis]
    uploaded = client.post(f"/api/projects/{pid}/images", files=files, headers=manager_headers)
    assert uploaded.status_code == 201, uploaded.text
    ids = [image["id"] for image in uploaded.json()["images"]]

    # Nothing annotated yet: training is refused up front, and so is stage 2.
    response = client.post(f"/api/projects/{pid}/detector/train", json=SMALL, headers=manager_headers)
    assert response.status_code == 409 and "0 masks on 0 images" in response.json()["detail"]
    project.settings = {"gates": {"semi_automatic": {"min_masks": 1}}}
    db.commit()
    annotator = make_user(Role.annotator)
    assert client.post(
        f"/api/projects/{pid}/members", json={"user_id": annotator.id}, headers=manager_headers
    ).status_code in (200, 201)
    a_headers = login(annotator)

    # Stage 1: the annotator saves the davis objects of the first images through the masks API.
    n_masks = 0
    for image_id, (_, mask_names) in zip(ids[:STAGE1], davis[:STAGE1]):
        assert client.post(f"/api/images/{image_id}/claim", headers=a_headers).status_code == 200
        for k, mask_name in enumerate(mask_names):
            saved = client.post(
                f"/api/images/{image_id}/masks",
                headers=a_headers,
                json={"client_id": f"s1-{image_id}-{k}", "rle": mask_rle(root / mask_name)},
            )
            assert saved.status_code == 201, saved.text
            n_masks += 1
    moved = client.post(f"/api/projects/{pid}/stage", json={"stage": "semi_automatic"}, headers=manager_headers)
    assert moved.status_code == 409 and "detector" in moved.json()["detail"], moved.text
    response = client.post(
        f"/api/projects/{pid}/detector/train", json={**SMALL, "min_boxes": 500}, headers=manager_headers
    )
    assert response.status_code == 409
    assert f"{n_masks} masks on {STAGE1} images, at least 500 masks" in response.json()["detail"]
    assert client.post(f"/api/projects/{pid}/detector/train", json=SMALL, headers=a_headers).status_code == 403
    assert client.post(f"/api/projects/{pid}/detector/propose", headers=manager_headers).status_code == 409

    # Train: a ready version with held-out metrics, split by image.
    job = _job(
        client, manager_headers, client.post(f"/api/projects/{pid}/detector/train", json=SMALL, headers=manager_headers)
    )
    assert job["status"] == "succeeded", job
    versions = client.get(f"/api/projects/{pid}/detectors", headers=manager_headers).json()
    assert len(versions) == 1 and versions[0]["status"] == "ready"
    version = versions[0]
    assert {"recall_50", "precision_50", "ap50"} <= set(version["metrics"])
    assert 0.0 <= version["metrics"]["ap50"] <= 1.0 and version["metrics"]["training"]["epochs_done"] == 4
    assert sorted(version["train_image_ids"] + version["heldout_image_ids"]) == sorted(ids[:STAGE1])
    # The seeded hash split of backend.masks.split (the request's held_out_fraction 0.2, seed 0).
    assert (version["train_image_ids"], version["heldout_image_ids"]) == split_images(
        ids[:STAGE1], 0.2, 0, min_train=MIN_TRAIN_IMAGES
    )
    assert job["result"]["detector_version_id"] == version["id"]

    moved = client.post(f"/api/projects/{pid}/stage", json={"stage": "semi_automatic"}, headers=manager_headers)
    assert moved.status_code == 200, moved.text

    # Proposals on every image not done in stage 2; a rerun adds nothing.
    params = {"score_thresh": 0.0, "pred_iou_thresh": 0.0, "max_boxes": 3}
    job = _job(
        client,
        manager_headers,
        client.post(f"/api/projects/{pid}/detector/propose", json=params, headers=manager_headers),
    )
    assert job["status"] == "succeeded", job
    assert job["result"]["proposed"] == len(ids) and job["result"]["masks"] >= 1
    listed = {i: client.get(f"/api/images/{i}/masks", headers=a_headers).json() for i in ids[STAGE1:]}
    prefilled = [m for masks in listed.values() for m in masks]
    assert prefilled and all(
        m["source"] == "detector"
        and m["stage"] == "semi_automatic"
        and m["prefill_outcome"] is None
        and m["predicted_iou"] is not None
        and m["provenance"]["origin"] == "detector"
        and m["provenance"]["detector_version_id"] == version["id"]
        and m["provenance"]["model_version_id"] is not None
        and m["prompts"] is None
        for m in prefilled
    )
    again = _job(
        client,
        manager_headers,
        client.post(f"/api/projects/{pid}/detector/propose", json=params, headers=manager_headers),
    )
    assert again["status"] == "succeeded" and again["result"]["proposed"] == 0
    assert sum(len(client.get(f"/api/images/{i}/masks", headers=a_headers).json()) for i in ids[STAGE1:]) == len(
        prefilled
    )

    # Telemetry: correct one pre-filled mask, delete another, mark the image done: the rest are kept.
    image_id, masks = max(listed.items(), key=lambda item: len(item[1]))
    assert client.post(f"/api/images/{image_id}/claim", headers=a_headers).status_code == 200
    corrected = client.post(
        f"/api/images/{image_id}/masks",
        headers=a_headers,
        json={
            "client_id": "fix-1",
            "rle": mask_rle(root / davis[STAGE1 + ids[STAGE1:].index(image_id)][1][0]),
            "replaces_mask_id": masks[0]["id"],
        },
    )
    assert corrected.status_code == 201, corrected.text
    assert corrected.json()["source"] == "manual" and corrected.json()["parent_mask_id"] == masks[0]["id"]
    assert (
        client.post(
            f"/api/images/{ids[0]}/masks",
            headers=a_headers,
            json={
                "client_id": "bad-parent",
                "rle": mask_rle(root / davis[0][1][0]),
                "replaces_mask_id": masks[0]["id"],
            },
        ).status_code
        == 422
    )  # not a mask of that image
    if len(masks) > 1:
        assert client.delete(f"/api/masks/{masks[1]['id']}", headers=a_headers).status_code == 204
    assert client.post(f"/api/images/{image_id}/done", headers=a_headers).status_code == 200
    db.expire_all()
    outcomes = {m.id: m.prefill_outcome for m in db.scalars(select(Mask).where(Mask.image_id == image_id))}
    assert outcomes[masks[0]["id"]] == "corrected" and outcomes[corrected.json()["id"]] is None
    if len(masks) > 1:
        assert outcomes[masks[1]["id"]] == "deleted"
    assert all(outcomes[m["id"]] == "kept" for m in masks[2:])
    assert [m["id"] for m in client.get(f"/api/images/{image_id}/masks", headers=a_headers).json()] == [
        m["id"] for m in masks[2:]
    ] + [corrected.json()["id"]]


def test_training_without_masks_fails_the_job_clearly(db, project, manager, settings):
    """A job that finds no masks (deleted after the POST) fails with the reason; its version is failed."""
    version = untrained_version  # noqa: F841 - the autouse fixture made the default model version
    job = jobs.create_job(db, "detect_train", project.id, manager.id)
    detector = DetectorVersion(
        project_id=project.id,
        model_version_id=None,
        job_id=job.id,
        name="detector v1",
        status=ModelStatus.training,
        hyperparameters={},
    )
    db.add(detector)
    db.flush()
    from backend.tables import ModelVersion

    detector.model_version_id = db.scalar(select(ModelVersion.id))
    job.params = {"detector_version_id": detector.id, "params": SMALL}
    db.commit()
    assert run_job(job.id, train_version, settings) == "failed"
    db.expire_all()
    job = db.get(Job, job.id)
    assert "no annotated masks to train a detector on (0 masks on 0 images)" in job.error
    assert db.get(DetectorVersion, detector.id).status == ModelStatus.failed
