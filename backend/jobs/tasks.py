"""Job upkeep tasks (run by Celery beat)."""

from __future__ import annotations

from backend.jobs import service
from backend.jobs.runner import worker_sessions
from backend.worker.celery_app import app, task_settings


@app.task(name="jobs.sweep_stale_jobs")
def sweep_stale_jobs() -> list[tuple[int, str]]:
    """Requeue or fail jobs whose worker stopped heartbeating (see `service.sweep_stale_jobs`)."""
    with worker_sessions()() as db:
        return service.sweep_stale_jobs(db, service.stale_after(task_settings()))
