"""Retraining rounds end to end through the API (eager Celery: the task runs inside the request),
on SQLite and PostgreSQL, with the untrained vit_t, real grabcut images and masks saved through the
masks API: round → new version with metrics → promote → the browser's decoder changed → rollback."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from backend.retraining.service import is_better
from backend.tables import Mask, ModelVersion
from backend.tables.enums import ReviewStatus
from tests.backend.jobs_helpers import GRABCUT_IMAGES, upload
from tests.backend.retraining_helpers import TINY, images_with_masks, save_mask


def _decoder(client, headers, project_id: int) -> tuple[int, bytes, str]:
    model = client.get(f"/api/projects/{project_id}/model", headers=headers).json()
    response = client.get(model["decoder_url"], headers=headers)
    assert response.status_code == 200, response.text
    return model["id"], response.content, response.headers["etag"]


def test_round_registers_a_version_promotion_changes_the_decoder_and_rollback_restores_it(
    client, db, eager, project, ml, manager_headers, data_root
):
    image_ids, _ = images_with_masks(client, manager_headers, project.id, data_root, 4)
    old_id, old_bytes, old_etag = _decoder(client, ml, project.id)

    response = client.post(f"/api/projects/{project.id}/retrain", headers=ml, json=TINY)
    assert response.status_code == 202, response.text
    job = client.get(f"/api/jobs/{response.json()['id']}", headers=ml).json()
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["step"] == result["total_steps"] == 2 and result["eta_seconds"] == 0
    assert [point[0] for point in result["loss_curve"]] == [1, 2]
    assert result["model_version_id"] == old_id and result["promoted"] is False

    versions = client.get(f"/api/projects/{project.id}/model-versions", headers=ml).json()
    new = versions[0]
    assert new["id"] == result["new_model_version_id"] and new["origin"] == "trained"
    assert new["parent_id"] == old_id and new["architecture"] == "vit_t" and new["status"] == "ready"
    assert [v["active"] for v in versions if v["id"] == old_id] == [True] and new["active"] is False
    for side in ("held_out", "parent_held_out"):
        metrics = new["metrics"][side]
        assert {"miou_1pt", "miou_at_1", "miou_at_3", "miou_at_5", "noc85", "noc90"} <= set(metrics)
        assert metrics["n_samples"] == new["data_snapshot"]["held_out_masks"] >= 1
        assert 0.0 <= metrics["miou_1pt"] <= 1.0 and 1.0 <= metrics["noc90"] <= TINY["max_clicks"]
    snapshot = new["data_snapshot"]
    assert snapshot["masks"] == 4 and snapshot["images"] == 4
    assert snapshot["by_source"] == {"manual": 4} and snapshot["by_stage"] == {"assisted_manual": 4}
    assert snapshot["train_images"] + snapshot["held_out_images"] == 4 and snapshot["held_out_images"] >= 1
    assert set(snapshot["held_out_image_ids"]) <= set(image_ids)
    assert new["hyperparameters"]["steps"] == 2 and new["hyperparameters"]["lr"] == pytest.approx(8e-4)
    assert new["sha256"] != client.get(f"/api/projects/{project.id}/model", headers=ml).json()["sha256"]
    # Decoder-only training: the round keeps its parent's image encoder, so it shares its embeddings.
    trained, parent = db.get(ModelVersion, new["id"]), db.get(ModelVersion, old_id)
    assert trained.encoder_sha256 == parent.encoder_sha256 is not None

    promoted = client.post(f"/api/projects/{project.id}/model-versions/{new['id']}/promote", headers=ml)
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    # Same image encoder: the project's embeddings are reused, no embedding job.
    assert body["previous_id"] == old_id and body["embed_job"] is None and body["embeddings_reused"] == 4
    new_id, new_bytes, new_etag = _decoder(client, ml, project.id)
    assert new_id == new["id"]
    assert hashlib.sha256(new_bytes).digest() != hashlib.sha256(old_bytes).digest() and new_etag != old_etag
    embedding = client.get(f"/api/images/{image_ids[0]}/embedding", headers=ml)
    assert embedding.status_code == 200 and embedding.headers["x-model-version"] == str(new_id)

    rolled = client.post(f"/api/projects/{project.id}/model-versions/rollback", headers=ml)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["model"]["id"] == old_id and rolled.json()["previous_id"] == new_id
    back_id, back_bytes, back_etag = _decoder(client, ml, project.id)
    assert (back_id, back_bytes, back_etag) == (old_id, old_bytes, old_etag)
    # The untrained version has no parent: nothing further to roll back to.
    again = client.post(f"/api/projects/{project.id}/model-versions/rollback", headers=ml)
    assert again.status_code == 409 and "no parent" in again.json()["detail"]
    # Promoting any earlier or later version by id works both ways.
    assert client.post(f"/api/projects/{project.id}/model-versions/{new_id}/promote", headers=ml).status_code == 200
    assert _decoder(client, ml, project.id)[2] == new_etag


def test_retrain_refuses_without_masks_and_fails_clearly_with_too_little_data(
    client, db, eager, project, ml, manager_headers, data_root
):
    response = client.post(f"/api/projects/{project.id}/retrain", headers=ml, json=TINY)
    assert response.status_code == 422
    assert "0 accepted mask" in response.json()["detail"] and "at least 2" in response.json()["detail"]

    # Deleted and rejected masks do not count.
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    kept = save_mask(client, ml, image_id, data_root, GRABCUT_IMAGES[0], "kept")
    deleted = save_mask(client, ml, image_id, data_root, GRABCUT_IMAGES[0], "deleted")
    rejected = save_mask(client, ml, image_id, data_root, GRABCUT_IMAGES[0], "rejected")
    assert client.delete(f"/api/masks/{deleted}", headers=ml).status_code == 204
    db.get(Mask, rejected).review_status = ReviewStatus.rejected
    db.commit()
    response = client.post(f"/api/projects/{project.id}/retrain", headers=ml, json=TINY)
    assert response.status_code == 422 and "1 accepted mask" in response.json()["detail"]

    # Enough masks but all on one image: the job itself fails, saying why; no version is made.
    save_mask(client, ml, image_id, data_root, GRABCUT_IMAGES[0], "second")
    assert kept
    response = client.post(f"/api/projects/{project.id}/retrain", headers=ml, json=TINY)
    assert response.status_code == 202, response.text
    job = client.get(f"/api/jobs/{response.json()['id']}", headers=ml).json()
    assert job["status"] == "failed" and "at least two images" in job["error"], job
    db.expire_all()
    assert db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id)).all() == []


def test_retrain_permissions_and_parameters(client, project, manager_headers, ml, make_user, login):
    assert client.post(f"/api/projects/{project.id}/retrain", headers=manager_headers, json=TINY).status_code == 403
    assert client.post(f"/api/projects/{project.id}/retrain", headers=ml, json={**TINY, "steps": 0}).status_code == 422
    assert (
        client.post(
            f"/api/projects/{project.id}/retrain", headers=ml, json={**TINY, "held_out_fraction": 1.0}
        ).status_code
        == 422
    )
    assert client.post(f"/api/projects/{project.id}/retrain", headers=ml, json={"bogus": 1}).status_code == 422
    outsider = login(make_user("ml_engineer"))
    assert client.post(f"/api/projects/{project.id}/retrain", headers=outsider, json=TINY).status_code == 404
    assert client.get(f"/api/projects/{project.id}/model-versions", headers=outsider).status_code == 404
    assert client.post(f"/api/projects/{project.id}/model-versions/999999/promote", headers=ml).status_code == 404
    assert (
        client.post(f"/api/projects/{project.id}/model-versions/1/promote", headers=manager_headers).status_code == 403
    )


def test_auto_promote_only_when_better(client, db, eager, project, ml, manager_headers, data_root):
    images_with_masks(client, manager_headers, project.id, data_root, 4)
    first = client.get(f"/api/projects/{project.id}/model", headers=ml).json()["id"]

    # A learning rate so small the weights barely move (zero biases do, by about 1e-12): metrics equal
    # but for float rounding are not better.
    response = client.post(
        f"/api/projects/{project.id}/retrain", headers=ml, json={**TINY, "lr": 1e-12, "auto_promote": True}
    )
    job = client.get(f"/api/jobs/{response.json()['id']}", headers=ml).json()
    assert job["status"] == "succeeded", job
    metrics = job["result"]["metrics"]
    assert metrics["held_out"] == pytest.approx(metrics["parent_held_out"], rel=1e-5, abs=1e-6)
    assert job["result"]["promoted"] is False and "not better" in job["result"]["promotion"]
    assert client.get(f"/api/projects/{project.id}/model", headers=ml).json()["id"] == first

    # A real round promotes exactly when `is_better` says so.
    response = client.post(
        f"/api/projects/{project.id}/retrain", headers=ml, json={**TINY, "steps": 4, "auto_promote": True}
    )
    job = client.get(f"/api/jobs/{response.json()['id']}", headers=ml).json()
    assert job["status"] == "succeeded", job
    better = is_better(job["result"]["metrics"]["held_out"], job["result"]["metrics"]["parent_held_out"])
    assert job["result"]["promoted"] is better
    active = client.get(f"/api/projects/{project.id}/model", headers=ml).json()["id"]
    assert active == (job["result"]["new_model_version_id"] if better else first)


def test_is_better_prefers_fewer_clicks_then_single_point_miou():
    base = {"noc90": 10.0, "miou_1pt": 0.5}
    assert is_better({"noc90": 9.0, "miou_1pt": 0.1}, base)
    assert not is_better({"noc90": 11.0, "miou_1pt": 0.9}, base)
    assert is_better({"noc90": 10.0, "miou_1pt": 0.6}, base)
    assert not is_better({"noc90": 10.0, "miou_1pt": 0.5}, base)
    assert not is_better({"noc90": 10.0, "miou_1pt": 0.4}, base)
    # Float noise is no evidence.
    assert not is_better({"noc90": 10.0 - 1e-6, "miou_1pt": 0.4}, base)
    assert not is_better({"noc90": 10.0, "miou_1pt": 0.5 + 1e-6}, base)
    assert is_better({"noc90": 10.0 + 1e-6, "miou_1pt": 0.6}, base)  # a NoC tie, then the mIoU decides
