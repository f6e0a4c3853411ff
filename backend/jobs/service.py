"""Job rows: the life of long work (queued → running → succeeded | failed | cancelled) and its recovery.

A task never trusts that it is the only one running a job: brokers deliver a message twice (after a
visibility timeout, after a worker loss). `claim` is an atomic UPDATE that moves a job to running only
if it is queued or its last runner stopped heartbeating, so two deliveries never work on one job at
once; the loser returns without doing anything. While a job runs, `Heartbeat` touches
``heartbeat_at`` `HEARTBEATS_PER_STALE_WINDOW` times per stale window (`Settings.job_stale_seconds`,
default 60 s) from a thread. `sweep_stale_jobs` finds running jobs whose heartbeat is older than the
window (the worker was killed or lost) and either sends them again (up to `MAX_ATTEMPTS` runs) or
marks them failed, so no job stays "running" forever. It runs in the process that supervises the
workers (`dataengine up`) and from Celery beat on any live worker (production), never only in the
worker that might be the dead one.

Why wait for the window instead of requeueing the moment a worker is seen dying: a job row does not
say which worker runs it, and other workers on the same database may be running jobs right now;
requeueing a live runner's job would run it twice at once. A missed heartbeat window is the one
sign that holds for every deployment.

A job's inputs are its ``params`` (fixed when it is created), the runs it was given its ``attempts``
(each claim adds one), and what its work reports its ``result``. Routes start jobs through
`start_or_existing`, so a second request while one runs gets that job instead of a duplicate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Update, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.core.config import DEFAULT_JOB_STALE_SECONDS, Settings
from backend.tables import Job, Project
from backend.tables.enums import JobStatus
from backend.webhooks.events import emit
from backend.worker import celery_app
from backend.worker.enqueue import enqueue_after_commit

HEARTBEATS_PER_STALE_WINDOW = 12  # a runner is taken for dead only after missing this many heartbeats
STALE_AFTER = timedelta(seconds=DEFAULT_JOB_STALE_SECONDS)
HEARTBEAT_SECONDS = DEFAULT_JOB_STALE_SECONDS / HEARTBEATS_PER_STALE_WINDOW
MAX_ATTEMPTS = 3
FINISHED = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
ACTIVE = (JobStatus.queued, JobStatus.running)
# The task that runs each job kind (what `submit` and the sweep send); a new kind adds one line here
# and its task's queue in `backend.worker.celery_app.TASK_QUEUES`.
TASK_FOR_KIND: dict[str, str] = {
    "embed": "embeddings.embed_images",
    "auto": "auto.annotate",
    "export": "exchange.export_project",
    "import_urls": "exchange.import_urls",
    "import_bucket": "exchange.import_bucket",
    "train": "retraining.retrain",
    "detect_train": "detection.train",
    "detect": "detection.propose",
    "score": "selection.score_images",
}


class JobCancelled(Exception):
    """Raised inside a running job when someone cancelled it; the runner stops cleanly."""


def now() -> datetime:
    return datetime.now(UTC)


def _rowcount(db: Session, statement: Update) -> int:
    """Run an UPDATE; how many rows it changed (its result is a CursorResult, which has the count)."""
    return cast(CursorResult[Any], db.execute(statement)).rowcount


def get_job(db: Session, job_id: int) -> Job:
    """The job `job_id`, read again from the database (another process may have changed it).

    Raises:
        JobCancelled: the job is gone (deleted with its project while it ran): its work stops as if
            cancelled.
    """
    job = db.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobCancelled(f"job {job_id} no longer exists")
    return job


def create_job(
    db: Session,
    kind: str,
    project_id: int | None,
    created_by: int | None,
    message: str = "",
    params: dict[str, Any] | None = None,
) -> Job:
    """Add a queued job (flushed, not committed: the caller commits it with whatever it belongs to)."""
    job = Job(
        kind=kind,
        project_id=project_id,
        created_by=created_by,
        status=JobStatus.queued,
        progress=0.0,
        message=message or "queued",
        params=params or {},
        attempts=0,
    )
    db.add(job)
    db.flush()
    return job


def submit(db: Session, job: Job, settings: Settings) -> Job:
    """Commit `job` and send its task after the commit (the task id is stored in the same commit)."""
    celery_app.configure(settings)
    job.celery_task_id = enqueue_after_commit(db, TASK_FOR_KIND[job.kind], job.id)
    db.commit()
    return job


@dataclass(frozen=True)
class JobInputs:
    """What a new job is started with: its `params`, the first `message`, and `attach`, run once the
    job row has its id and before the commit that sends it (for a row that names its job)."""

    params: dict[str, Any]
    message: str
    attach: Callable[[Job], None] | None = None


class Started(NamedTuple):
    job: Job
    created: bool  # False: `job` was already queued or running


def pending_job(db: Session, project_id: int, kind: str) -> Job | None:
    """The newest queued or running job of `kind` in the project."""
    return db.scalar(
        select(Job)
        .where(Job.project_id == project_id, Job.kind == kind, Job.status.in_(ACTIVE))
        .order_by(Job.id.desc())
    )


def start_or_existing(
    db: Session,
    settings: Settings,
    kind: str,
    project_id: int,
    user_id: int | None,
    inputs: Callable[[], JobInputs],
    reuse: Callable[[Job], bool] | None = None,
) -> Started:
    """Start a `kind` job of the project, unless one is queued or running: then return that one.

    Every route that starts a job comes here. `inputs` is called only when a job is made (it may
    check and refuse by raising, or commit, e.g. to give the project its model version); `reuse`
    says whether the pending job does what was asked (default: any pending job of the kind does;
    an embed job only if it embeds with the same model version). A new job is committed and its
    task sent after the commit (`submit`); a reused one is returned with the session committed too,
    so either way the caller's changes in the session are stored.

    Two requests at the same moment start one job: the project's row is locked (`_lock_project`) from
    the check to the commit of the new job, and checked again after `inputs`, which may commit (and so
    release the lock) before the job exists.
    """
    _lock_project(db, project_id)
    pending = pending_job(db, project_id, kind)
    if pending is not None and (reuse is None or reuse(pending)):
        db.commit()
        return Started(pending, False)
    start = inputs()
    _lock_project(db, project_id)
    pending = pending_job(db, project_id, kind)
    if pending is not None and (reuse is None or reuse(pending)):
        db.commit()
        return Started(pending, False)
    job = create_job(db, kind, project_id, user_id, start.message, start.params)
    if start.attach is not None:
        start.attach(job)
    return Started(submit(db, job, settings), True)


def _lock_project(db: Session, project_id: int) -> None:
    """Hold the project's row until the session commits: an UPDATE that changes nothing takes the row
    lock on PostgreSQL and the database's write lock on SQLite, where `SELECT ... FOR UPDATE` does not
    exist; a second caller waits here until the first has committed its job."""
    db.execute(
        update(Project)
        .where(Project.id == project_id)
        .values(stage=Project.stage)
        .execution_options(synchronize_session=False)
    )


def claim(db: Session, job_id: int, stale_after: timedelta = STALE_AFTER) -> bool:
    """Atomically move the job to running if nobody else is running it (one more attempt); True if
    this caller won."""
    t = now()
    claimed = _rowcount(
        db,
        update(Job)
        .where(
            Job.id == job_id,
            or_(
                Job.status == JobStatus.queued,
                (Job.status == JobStatus.running) & (Job.heartbeat_at < t - stale_after),
            ),
        )
        .values(
            status=JobStatus.running,
            started_at=t,
            heartbeat_at=t,
            finished_at=None,
            error=None,
            attempts=Job.attempts + 1,
        )
        .execution_options(synchronize_session=False),
    )
    db.commit()
    return bool(claimed)


def set_progress(db: Session, job_id: int, progress: float, message: str | None = None) -> None:
    """Record progress (0..1) and a human message; raises `JobCancelled` if the job was cancelled."""
    job = get_job(db, job_id)
    if job.status == JobStatus.cancelled:
        raise JobCancelled(f"job {job_id} was cancelled")
    job.progress = min(max(float(progress), 0.0), 1.0)
    if message is not None:
        job.message = message
    job.heartbeat_at = now()
    db.commit()


def succeed(db: Session, job_id: int, result: dict[str, Any], message: str = "done") -> None:
    job = get_job(db, job_id)
    job.status, job.progress, job.message, job.result = JobStatus.succeeded, 1.0, message, result
    job.finished_at = job.heartbeat_at = now()
    emit(db, job.project_id, "job.succeeded", {"job_id": job.id, "kind": job.kind, "message": message})
    db.commit()


def fail(db: Session, job_id: int, error: str) -> None:
    job = db.get(Job, job_id, populate_existing=True)
    if job is None or job.status in FINISHED:
        return
    job.status, job.error, job.message = JobStatus.failed, error, "failed"
    job.finished_at = now()
    emit(db, job.project_id, "job.failed", {"job_id": job.id, "kind": job.kind, "error": error[:2000]})
    db.commit()


def cancel(db: Session, job: Job) -> Job:
    """Cancel a queued or running job (a running task stops at its next progress report)."""
    if job.status not in FINISHED:
        job.status, job.message, job.finished_at = JobStatus.cancelled, "cancelled", now()
        db.commit()
    return job


def list_project_jobs(db: Session, project_id: int, kind: str | None = None, limit: int = 50) -> list[Job]:
    query = select(Job).where(Job.project_id == project_id)
    if kind:
        query = query.where(Job.kind == kind)
    return list(db.scalars(query.order_by(Job.id.desc()).limit(limit)))


def stale_after(settings: Settings) -> timedelta:
    """The heartbeat age past which a running job counts as abandoned under `settings`."""
    return timedelta(seconds=settings.job_stale_seconds)


def sweep_stale_jobs(
    db: Session, stale_after: timedelta = STALE_AFTER, max_attempts: int = MAX_ATTEMPTS
) -> list[tuple[int, str]]:
    """Requeue (and send again) or fail every running job whose heartbeat is older than `stale_after`.

    Each job is taken over by a conditional UPDATE in its own transaction, so two sweepers running
    at once (beat's and the supervisor's) never requeue one job twice, and a runner that heartbeats
    between the query and the update keeps its job. Returns (job id, "requeued" | "failed") for each
    job it touched.
    """
    cutoff = now() - stale_after
    stale = db.execute(
        select(Job.id, Job.kind, Job.attempts).where(Job.status == JobStatus.running, Job.heartbeat_at < cutoff)
    ).all()
    db.rollback()  # end the read: each takeover below is its own write transaction
    actions: list[tuple[int, str]] = []
    for job_id, kind, attempts in stale:
        if attempts >= max_attempts or kind not in TASK_FOR_KIND:
            action, values = (
                "failed",
                {
                    "status": JobStatus.failed,
                    "finished_at": now(),
                    "message": "failed",
                    "error": (
                        f"the worker running this job stopped responding {attempts} time(s); "
                        "giving up (work already done is kept)"
                    ),
                },
            )
        else:
            action, values = (
                "requeued",
                {"status": JobStatus.queued, "message": f"worker lost; requeued (attempt {attempts + 1})"},
            )
        taken = _rowcount(
            db,
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running, Job.heartbeat_at < cutoff)
            .values(**values)
            .execution_options(synchronize_session=False),
        )
        if taken and action == "requeued":
            task_id = enqueue_after_commit(db, TASK_FOR_KIND[kind], job_id)
            db.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(celery_task_id=task_id)
                .execution_options(synchronize_session=False)
            )
        db.commit()
        if taken:
            actions.append((job_id, action))
    return actions


class Heartbeat:
    """Touches the job's ``heartbeat_at`` every `interval` seconds from a daemon thread.

    A context manager around the work of a task: the heartbeat says "this worker is alive" even while
    one long step (a batch on a slow CPU) runs, so staleness means a dead worker, not a slow one.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session] | Callable[[], Session],
        job_id: int,
        interval: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.session_factory = session_factory
        self.job_id = job_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self.session_factory() as db:
                db.execute(
                    update(Job)
                    .where(Job.id == self.job_id, Job.status == JobStatus.running)
                    .values(heartbeat_at=now())
                    .execution_options(synchronize_session=False)
                )
                db.commit()
