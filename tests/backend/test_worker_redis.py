"""A real Celery worker process on real Redis and PostgreSQL embeds a project; a killed one loses nothing.

Skipped (with the reason) only when Redis at 127.0.0.1:6379 or PostgreSQL is unreachable.
The worker is `celery -A backend.worker.celery_app worker -Q embed -P solo`, configured through
the same `DATAENGINE_*` environment variables production uses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.core.config import Settings
from backend.jobs import service as jobs
from backend.tables import Embedding
from model_server.service.embedding_file import load_embedding
from tests.backend.celery_workers import REDIS_URL, redis_broker, wait_for, worker_processes
from tests.backend.jobs_helpers import upload

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


@pytest.fixture
def redis_settings(settings: Settings) -> Iterator[Settings]:
    with redis_broker(settings, REDIS_URL) as configured:
        yield configured


@pytest.fixture
def start_worker(redis_settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    with worker_processes(redis_settings, "embed", tmp_path) as start:
        yield start


def _job(client, headers, job_id: int) -> dict:
    return client.get(f"/api/jobs/{job_id}", headers=headers).json()


def test_real_worker_embeds_every_image(client, db, project, manager_headers, data_root, redis_settings, start_worker):
    image_ids = upload(client, manager_headers, project.id, data_root, 3)
    start_worker("w1")
    job_id = client.post(f"/api/projects/{project.id}/embed", headers=manager_headers).json()["id"]
    job = wait_for(
        lambda: (j := _job(client, manager_headers, job_id))["status"] in jobs.FINISHED and j,
        300,
        "the embed job to finish",
    )
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0 and job["result"]["embedded"] == 3
    rows = db.scalars(select(Embedding).order_by(Embedding.image_id)).all()
    assert [r.image_id for r in rows] == image_ids
    for row in rows:
        embedding, _, _ = load_embedding(redis_settings.storage_path / row.storage_key)
        assert embedding.shape == (256, 64, 64)


def test_killed_worker_job_is_recovered_not_left_running(
    client, db, project, manager_headers, data_root, redis_settings, start_worker
):
    image_ids = upload(client, manager_headers, project.id, data_root, 5)
    first = start_worker("w1")
    job_id = client.post(f"/api/projects/{project.id}/embed", headers=manager_headers).json()["id"]

    def embedded() -> int:
        db.expire_all()
        return db.scalar(select(func.count()).select_from(Embedding))

    wait_for(lambda: embedded() >= 1, 300, "the first embeddings")
    os.killpg(first.pid, signal.SIGKILL)  # the machine dies mid-job: no cleanup runs
    first.wait()
    partial = embedded()
    assert 1 <= partial < len(image_ids)
    assert _job(client, manager_headers, job_id)["status"] == "running"  # nobody can know yet

    # Its heartbeat stops; the beat sweep (run here, with a short staleness) sends the job again.
    time.sleep(jobs.HEARTBEAT_SECONDS + 1)
    with_stale = timedelta(seconds=jobs.HEARTBEAT_SECONDS)
    assert jobs.sweep_stale_jobs(db, stale_after=with_stale) == [(job_id, "requeued")]
    assert _job(client, manager_headers, job_id)["status"] == "queued"

    start_worker("w2")
    job = wait_for(
        lambda: (j := _job(client, manager_headers, job_id))["status"] in jobs.FINISHED and j,
        300,
        "the requeued job to finish",
    )
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert job["result"]["already_done"] == partial  # the rows of the killed run were kept, not redone
    rows = db.scalars(select(Embedding).order_by(Embedding.image_id)).all()
    assert [r.image_id for r in rows] == image_ids  # one per image, no duplicates
    for row in rows:
        load_embedding(redis_settings.storage_path / row.storage_key)  # every row's file is whole
