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
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.core.config import Settings
from backend.jobs import service as jobs
from backend.tables import Image, Mask
from tests.backend.celery_workers import redis_broker, redis_database, wait_for, worker_processes
from tests.backend.jobs_helpers import upload

# A Redis database of its own (the embedding worker test flushes and uses its own): two suites running at
# once on one machine must not take each other's messages.
REDIS_URL = redis_database(12)

LOW = {"points_per_side": 4, "points_per_batch": 16, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}

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
def auto_worker(redis_settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    with worker_processes(redis_settings, "auto", tmp_path) as start:
        yield start


def test_killed_auto_worker_leaves_whole_images_and_the_requeued_job_finishes(
    client, db, project, manager_headers, data_root, auto_worker
):
    ids = upload(client, manager_headers, project.id, data_root, 2)
    first = auto_worker("a1")
    job_id = client.post(f"/api/projects/{project.id}/auto-annotate", json=LOW, headers=manager_headers).json()["id"]

    def done_images() -> list[int]:
        db.expire_all()
        return [
            i.id
            for i in db.scalars(select(Image).where(Image.project_id == project.id))
            if "fully_automatic" in i.stage_done
        ]

    wait_for(done_images, 400, "the first image to be stored")
    os.killpg(first.pid, signal.SIGKILL)  # the machine dies mid-job
    first.wait()
    assert done_images() == [ids[0]]
    kept = list(db.scalars(select(Mask.id).where(Mask.image_id == ids[0]).order_by(Mask.id)))
    assert list(db.scalars(select(Mask.id).where(Mask.image_id == ids[1]))) == []  # no half image

    time.sleep(jobs.HEARTBEAT_SECONDS + 1)
    assert jobs.sweep_stale_jobs(db, stale_after=timedelta(seconds=jobs.HEARTBEAT_SECONDS)) == [(job_id, "requeued")]
    auto_worker("a2")
    job = wait_for(
        lambda: (
            (j := client.get(f"/api/jobs/{job_id}", headers=manager_headers).json())["status"] in jobs.FINISHED and j
        ),
        400,
        "the requeued auto job to finish",
    )
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2 and job["result"]["already_done"] == 1 and job["result"]["processed"] == 1
    assert job["progress"] == 1.0
    assert done_images() == ids
    db.expire_all()
    assert list(db.scalars(select(Mask.id).where(Mask.image_id == ids[0]).order_by(Mask.id))) == kept
    assert job["result"]["masks"] == len(list(db.scalars(select(Mask.id).where(Mask.image_id == ids[1]))))
