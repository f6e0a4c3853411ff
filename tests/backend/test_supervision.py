"""`dataengine up` supervises its processes: a worker killed mid-job is restarted and the job
finishes without a person and without duplicates; there is one beat per data dir; SIGTERM leaves no
process behind (SIGINT: tests/backend/test_up.py)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.core.config import Settings
from backend.worker import celery_app
from tests.backend.celery_workers import UpProcess, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES = 6
STALE_SECONDS = 12  # heartbeats every second: a live worker stays far from stale, a dead one is seen in 12-18 s


def test_the_beat_lock_is_exclusive_and_dies_with_its_holder(tmp_path):
    held = celery_app.hold_beat_lock(tmp_path)
    with pytest.raises(celery_app.BeatLocked, match="another celery beat holds"):
        celery_app.hold_beat_lock(tmp_path)
    with pytest.raises(celery_app.BeatLocked):  # beat's scheduler takes it before it opens its schedule file
        celery_app.LockedScheduler(
            app=celery_app.configure(Settings(data_dir=tmp_path)),
            schedule_filename=str(tmp_path / "schedule"),
            lazy=True,
        )
    assert not (tmp_path / "schedule").exists() and not (tmp_path / "schedule.db").exists()
    held.close()  # what the kernel does when the holder dies
    celery_app.hold_beat_lock(tmp_path).close()


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_its_job_finishes_once(tmp_path, data_root):
    images = sorted((data_root / "grabcut" / "images").glob("*.jpg"))[:IMAGES]
    with (
        UpProcess(tmp_path, DATAENGINE_JOB_STALE_SECONDS=str(STALE_SECONDS)) as up,
        httpx.Client(base_url=up.base_url, timeout=60) as http,
    ):
        headers = up.login(http)
        project = http.post("/api/projects", json={"name": "supervised"}, headers=headers).json()
        files = [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in images]
        assert http.post(f"/api/projects/{project['id']}/images", files=files, headers=headers).status_code == 201
        job = http.post(f"/api/projects/{project['id']}/embed", headers=headers).json()
        job_url = f"/api/jobs/{job['id']}"

        def mid_job() -> dict | None:
            job = http.get(job_url, headers=headers).json()
            assert job["status"] in ("queued", "running"), f"the job ended before the kill: {job}"
            return job if job["status"] == "running" and 0 < job["progress"] < 1 else None

        wait_for(mid_job, 300, "the embed job to be part done")
        worker = int(up.output.wait_for(r"worker started \(pid (\d+)\)", 1)[0].group(1))
        os.kill(worker, signal.SIGKILL)

        up.output.wait_for(rf"worker \(pid {worker}\) exited with code -9; restarting", 10)
        up.output.wait_for(r"worker started", 60, count=2)
        # The stuck job is requeued by up itself (the dead worker cannot), then the new worker runs it.
        wait_for(
            lambda: http.get(job_url, headers=headers).json()["status"] not in ("queued", "running"),
            180,
            f"the job to finish after the kill; output:\n{up.output.text()}",
        )
        job = http.get(job_url, headers=headers).json()
        assert job["status"] == "succeeded" and job["attempts"] == 2, job
        assert job["result"]["embedded"] + job["result"]["already_done"] == IMAGES, job
        assert job["result"]["already_done"] > 0, job  # the first run's work was kept, not redone
        with sqlite3.connect(up.data_dir / "dataengine.db") as db:
            rows, images_embedded = db.execute("SELECT COUNT(*), COUNT(DISTINCT image_id) FROM embeddings").fetchone()
        assert rows == images_embedded == IMAGES

        # One beat, through the worker's death and for any other beat on this data dir.
        beats = [info for info in up.tree() if " beat " in f"{info.command} "]
        assert len(beats) == 1, up.tree()
        with pytest.raises(celery_app.BeatLocked):
            celery_app.hold_beat_lock(up.data_dir)
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "backend.worker.celery_app",
                "beat",
                "-s",
                str(tmp_path / "second-schedule"),
            ],
            cwd=REPO_ROOT,
            env=up.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert second.returncode != 0 and "another celery beat holds" in second.stdout + second.stderr, second

        started = time.monotonic()
        assert up.stop(signal.SIGTERM) == []
        assert time.monotonic() - started < 30
