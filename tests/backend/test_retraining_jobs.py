"""Retraining as jobs: a cancel stops a running round (no version is registered), and the beat
check starts a round once a project collected `retrain_every_masks` new masks (SQLite + PostgreSQL)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from backend.jobs import service as jobs
from backend.jobs.runner import run_job
from backend.retraining import tasks
from backend.retraining.schemas import RetrainParams
from backend.storage import storage_for
from backend.tables import Job, ModelVersion, Project
from backend.tables.enums import JobStatus
from backend.worker import celery_app
from tests.backend.jobs_helpers import GRABCUT_IMAGES, upload
from tests.backend.retraining_helpers import TINY, images_with_masks, save_mask


def test_cancel_stops_a_running_round(client, db, settings, project, manager_headers, ml, data_root):
    images_with_masks(client, manager_headers, project.id, data_root, 3)
    parent = client.get(f"/api/projects/{project.id}/model", headers=ml).json()["id"]
    params = RetrainParams(**{**TINY, "steps": 100_000}).model_dump()
    job = jobs.create_job(
        db, "train", project.id, None, params={"model_version_id": parent, "mask_watermark": 0, "params": params}
    )
    db.commit()
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(run_job(job.id, tasks.run_round, settings)))
    worker.start()
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # wait until training reports its first step
            state = client.get(f"/api/jobs/{job.id}", headers=ml).json()
            if state["status"] != "queued" and (state["result"] or {}).get("step", 0) >= 1:
                break
            assert state["status"] in ("queued", "running"), state
            time.sleep(0.5)
        response = client.post(f"/api/jobs/{job.id}/cancel", headers=ml)
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
    finally:
        worker.join(timeout=600)
    assert outcome == ["cancelled"]
    final = client.get(f"/api/jobs/{job.id}", headers=ml).json()
    assert final["status"] == "cancelled" and final["result"]["step"] < 100_000
    db.expire_all()
    assert db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id)).all() == []
    assert list(storage_for(settings).list(f"training/job-{job.id}/")) == []  # its resumable state too


def test_beat_starts_a_round_after_n_new_masks(client, db, settings, project, manager_headers, data_root, monkeypatch):
    celery_app.configure(settings, eager=False)
    sent: list[tuple] = []
    monkeypatch.setattr(celery_app, "enqueue", lambda name, *args, task_id=None: sent.append((name, args)) or task_id)
    image_ids = upload(client, manager_headers, project.id, data_root, 3)
    save_mask(client, manager_headers, image_ids[0], data_root, GRABCUT_IMAGES[0], "a")
    save_mask(client, manager_headers, image_ids[1], data_root, GRABCUT_IMAGES[1], "b")
    assert tasks.start_due_retrain_rounds() == []  # off by default

    row = db.get(Project, project.id)
    row.settings = {"retrain_every_masks": 3, "retrain_params": {**TINY, "min_masks": 2}}
    db.commit()
    assert tasks.start_due_retrain_rounds() == []  # 2 of 3 masks
    save_mask(client, manager_headers, image_ids[2], data_root, GRABCUT_IMAGES[2], "c")
    started = tasks.start_due_retrain_rounds()
    assert len(started) == 1 and started[0][0] == project.id
    job = db.get(Job, started[0][1])
    assert job.kind == "train" and job.status == JobStatus.queued and job.created_by is None
    assert "3 new masks" in job.params["reason"] and job.params["params"]["steps"] == TINY["steps"]
    assert job.result is None and job.attempts == 0
    assert sent == [("retraining.retrain", (job.id,))]
    assert tasks.start_due_retrain_rounds() == []  # one round at a time

    # The round ends; N new masks are counted from its watermark, not from the start.
    job.status = JobStatus.failed
    db.commit()
    assert tasks.start_due_retrain_rounds() == []
    for k in range(3):
        save_mask(client, manager_headers, image_ids[k], data_root, GRABCUT_IMAGES[k], f"again-{k}")
    assert [p for p, _ in tasks.start_due_retrain_rounds()] == [project.id]
