"""Running a job inside a Celery task: claim, heartbeat, progress, and an honest end state.

`run_job(job_id, work)` is what every job task calls. It claims the job (returning without work if
another delivery holds it or it is already finished), keeps its heartbeat, hands `work` a
`JobContext` for progress, and records the outcome: succeeded with `work`'s result, cancelled, or
failed with a clear message. It never lets an exception leave a job "running".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from backend.core.config import Settings
from backend.core.db import make_engine, make_session_factory
from backend.jobs import service
from backend.tables import Job, Project
from backend.tables.enums import JobStatus
from backend.worker.celery_app import task_settings

log = logging.getLogger(__name__)


@functools.cache
def _session_factory(database_url: str) -> sessionmaker[Session]:
    return make_session_factory(make_engine(database_url))


def worker_sessions(settings: Settings | None = None) -> sessionmaker[Session]:
    """The session factory of the worker process (one engine per database URL)."""
    return _session_factory((settings or task_settings()).db_url)


@dataclass
class JobContext:
    """What a job's work function gets: a session, the settings, its job and a progress reporter."""

    job_id: int
    db: Session
    settings: Settings

    def job(self) -> Job:
        """The job row, read again; raises `service.JobCancelled` if it is gone."""
        return service.get_job(self.db, self.job_id)

    def project(self) -> Project:
        """The job's project; raises `service.JobCancelled` if it is gone (its jobs go with it)."""
        project_id = self.job().project_id
        project = self.db.get(Project, project_id) if project_id is not None else None
        if project is None:
            raise service.JobCancelled(f"the project of job {self.job_id} no longer exists")
        return project

    def progress(self, done: int, total: int, message: str | None = None) -> None:
        """Record `done` of `total` units; raises `service.JobCancelled` if the job was cancelled."""
        service.set_progress(self.db, self.job_id, done / total if total else 1.0, message)


def run_job(job_id: int, work: Callable[[JobContext], dict[str, Any]], settings: Settings | None = None) -> str:
    """Run `work` for job `job_id` unless another runner holds it; return what happened.

    Returns "succeeded", "failed", "cancelled", "skipped" (finished already, or unknown), or "busy"
    (another runner holds it and heartbeats: the caller may try again after `service.STALE_AFTER`).
    Claim and heartbeat follow `settings.job_stale_seconds`, the window the sweep uses.
    """
    settings = settings or task_settings()
    sessions = worker_sessions(settings)
    window = service.stale_after(settings)
    with sessions() as db:
        if not service.claim(db, job_id, window):
            job = db.get(Job, job_id)
            return "busy" if job is not None and job.status == JobStatus.running else "skipped"
        try:
            with service.Heartbeat(sessions, job_id, window.total_seconds() / service.HEARTBEATS_PER_STALE_WINDOW):
                result = work(JobContext(job_id, db, settings))
        except service.JobCancelled:
            return "cancelled"
        except Exception as error:
            db.rollback()
            log.exception("job %s failed", job_id)
            message = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
            service.fail(db, job_id, message)
            return "failed"
        failed = result.get("failed")  # images the work recorded as failed (backend/jobs/failures.py)
        service.succeed(db, job_id, result, f"done, {failed} images failed" if failed else "done")
        return "succeeded"
