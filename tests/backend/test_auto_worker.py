"""A real Celery worker (``-Q auto``, Redis, PostgreSQL) runs the auto stage; a killed one loses no image.

Skipped (with the reason) when Redis or PostgreSQL is unreachable, like the embedding worker test
(but on Redis database 12, so the two never share a queue). Untrained vit_t, LOW thresholds (random weights give few
confident masks), 2 images; the worker is SIGKILLed once the first image is stored, the beat sweep
requeues the job, a second worker finishes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.core.config import Settings
from backend.jobs import service as jobs
from backend.models import Image, Mask
from backend.worker import celery_app
from tests.backend.jobs_helpers import upload
from tests.backend.test_worker_redis import REDIS_URL as EMBED_TEST_REDIS_URL
from tests.backend.test_worker_redis import _wait

# A Redis database of its own (the embedding worker test flushes and uses its own): two suites running at
# once on one machine must not take each other's messages.
REDIS_URL = EMBED_TEST_REDIS_URL.rsplit("/", 1)[0] + "/12"

REPO_ROOT = Path(__file__).resolve().parents[2]
LOW = {"points_per_side": 4, "points_per_batch": 16, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]


@pytest.fixture
def redis_settings(settings: Settings) -> Iterator[Settings]:
    import redis

    try:
        connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        connection.ping()
    except redis.exceptions.RedisError as error:
        pytest.skip(f"Redis at {REDIS_URL} unreachable: {error}")
    connection.flushdb()  # no messages left by an earlier (killed) run
    settings.broker_url = REDIS_URL
    celery_app.configure(settings, eager=False)
    yield settings
    connection.flushdb()
    celery_app.configure(Settings(data_dir=settings.data_dir), eager=False)


@pytest.fixture
def auto_worker(redis_settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    started: list[subprocess.Popen] = []

    def start(name: str) -> subprocess.Popen:
        env = {**os.environ, "DATAENGINE_DATA_DIR": str(redis_settings.data_dir),
               "DATAENGINE_DATABASE_URL": redis_settings.db_url,
               "DATAENGINE_STORAGE_ROOT": str(redis_settings.storage_path),
               "DATAENGINE_SECRET_KEY": redis_settings.ensure_secret_key(),
               "DATAENGINE_BROKER_URL": REDIS_URL, "OMP_NUM_THREADS": "2"}
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - the worker owns it
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backend.worker.celery_app", "worker", "-Q", "auto", "-P", "solo",
             "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "info"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_killed_auto_worker_leaves_whole_images_and_the_requeued_job_finishes(
    client, db, project, manager_headers, data_root, auto_worker
):
    ids = upload(client, manager_headers, project.id, data_root, 2)
    first = auto_worker("a1")
    job_id = client.post(f"/api/projects/{project.id}/auto-annotate", json=LOW, headers=manager_headers).json()["id"]

    def done_images() -> list[int]:
        db.expire_all()
        return [i.id for i in db.scalars(select(Image).where(Image.project_id == project.id))
                if "fully_automatic" in i.stage_done]

    _wait(done_images, 400, "the first image to be stored")
    os.killpg(first.pid, signal.SIGKILL)  # the machine dies mid-job
    first.wait()
    assert done_images() == [ids[0]]
    kept = list(db.scalars(select(Mask.id).where(Mask.image_id == ids[0]).order_by(Mask.id)))
    assert list(db.scalars(select(Mask.id).where(Mask.image_id == ids[1]))) == []  # no half image

    time.sleep(jobs.HEARTBEAT_SECONDS + 1)
    assert jobs.sweep_stale_jobs(db, stale_after=timedelta(seconds=jobs.HEARTBEAT_SECONDS)) == [(job_id, "requeued")]
    auto_worker("a2")
    job = _wait(lambda: (j := client.get(f"/api/jobs/{job_id}", headers=manager_headers).json())["status"]
                in jobs.FINISHED and j, 400, "the requeued auto job to finish")
    assert job["status"] == "succeeded", job
    assert job["result"]["attempts"] == 2 and job["result"]["already_done"] == 1 and job["result"]["processed"] == 1
    assert job["progress"] == 1.0
    assert done_images() == ids
    db.expire_all()
    assert list(db.scalars(select(Mask.id).where(Mask.image_id == ids[0]).order_by(Mask.id))) == kept
    assert job["result"]["masks"] == len(list(db.scalars(select(Mask.id).where(Mask.image_id == ids[1]))))
