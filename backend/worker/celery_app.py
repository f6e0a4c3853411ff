"""The Celery application: queues, routes, reliability settings and the broker of each deployment.

Tasks are named by their domain (``embeddings.embed_images``, ``detection.train``, ...); queues are by
resource (``embed``, ``auto``, ``train``, ``webhooks``), and which queue serves each task is said in one
place, `TASK_QUEUES`: long GPU/CPU-bound work of the same kind waits in one line whatever domain it
comes from, the small upkeep tasks (the jobs sweep, the retraining check) ride on ``embed``, never
behind a long training, and webhook deliveries, which wait on other people's servers, have a queue of
their own. A worker serves the queues it is started with (``-Q embed``).

Brokers:

* **production**: ``DATAENGINE_BROKER_URL=redis://redis:6379/0`` (and ``DATAENGINE_RESULT_BACKEND``,
  default the same Redis).
* **embedded** (no broker URL): kombu's SQLAlchemy transport on a SQLite file next to the database
  (``sqla+sqlite:///<data_dir>/broker.sqlite``) and Celery's database result backend
  (``db+sqlite:///<data_dir>/celery-results.sqlite``). Chosen over kombu's filesystem transport
  because every message is a row written in a transaction: kombu takes SQLite's write lock
  (``BEGIN IMMEDIATE``) to fetch one, so the API, the worker and a second worker process can share
  it without half-read or doubly delivered messages, and it survives a restart as one file. Its
  limits: it polls (every second) and has no fan-out across processes, so remote
  control and worker events are off in that mode.

Reliability: ``acks_late`` + ``reject_on_worker_lost`` (a message is acknowledged only after its
task finished, and one whose worker process died is given back), prefetch 1 (a worker holds one
message at a time). That is not enough when the whole worker dies (SIGKILL, a lost machine):
kombu's SQLAlchemy transport hides a message for good when it is fetched (``visible = False``),
so nothing brings it back, and Redis gives an unacknowledged message back only after its
visibility timeout (set to hours, so that hours-long training is not delivered twice). Job-level
recovery covers both: tasks heartbeat their job row, and `backend.jobs.tasks.sweep_stale_jobs`
(Celery beat, every half `Settings.job_stale_seconds`) requeues or fails jobs whose worker stopped
heartbeating; `dataengine up` also sweeps from its supervisor, which does not need a live worker.

One beat per data dir: beat would send every periodic task once per running beat, so beat's
scheduler (`LockedScheduler`, set as ``beat_scheduler``) takes an exclusive `fcntl.flock` on
``<data_dir>/celerybeat.lock`` before it opens its schedule file, and the process exits if another
beat holds it. The kernel drops the lock when its holder dies, however it dies, so a killed beat
never blocks the next one (a pidfile can outlive its process and name a reused pid).

`app` is configured from the environment (``Settings()``) when a worker imports this module
(``celery -A backend.worker.celery_app worker -Q embed``); the API process calls `configure`
with its own settings before it enqueues anything.
"""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path
from typing import IO

from celery import Celery, signals
from celery.beat import PersistentScheduler

from backend.core.config import Settings

QUEUES = ("embed", "auto", "train", "webhooks")
# Every task and its queue; a new task adds one line (and, if it runs a job kind, one in
# backend.jobs.service.TASK_FOR_KIND).
TASK_QUEUES = {
    "embeddings.embed_images": "embed",
    "auto.annotate": "auto",
    "detection.propose": "auto",
    "exchange.export_project": "auto",
    "exchange.import_urls": "embed",  # downloads: waiting on other servers, no model
    "exchange.import_bucket": "embed",  # reads from an object store, no model
    "retraining.retrain": "train",
    "detection.train": "train",
    "jobs.sweep_stale_jobs": "embed",
    "retraining.start_due_rounds": "embed",
    "webhooks.deliver": "webhooks",  # deliveries: a slow receiver waits on this queue only
    "selection.score_images": "embed",  # a few decoder calls per image, beside the embeddings they read
    "selection.start_due_scoring": "embed",
}
TASK_ROUTES = {name: {"queue": queue} for name, queue in TASK_QUEUES.items()}
# Modules that define tasks; a new domain appends its tasks module here.
TASK_MODULES = [
    "backend.jobs.tasks",
    "backend.embeddings.tasks",
    "backend.auto.tasks",
    "backend.exchange.tasks",
    "backend.exchange.url_images",
    "backend.exchange.bucket_images",
    "backend.retraining.tasks",
    "backend.detection.tasks",
    "backend.webhooks.delivery",
    "backend.selection.tasks",
]
BEAT_LOCK_FILE = "celerybeat.lock"
BROKER_LOCK_FILE = "broker.lock"  # held while a process makes the embedded broker ready
RETRAIN_CHECK_SECONDS = 60.0  # how often beat looks for projects due a retraining round
SCORE_CHECK_SECONDS = 60.0  # how often beat looks for embedded images without selection scores
REDIS_VISIBILITY_TIMEOUT = 12 * 3600

app = Celery("dataengine", include=TASK_MODULES)
_configured_for: tuple[str, str, bool] | None = None
_lock = threading.Lock()
_beat_lock: IO[str] | None = None  # the beat lock this process holds (see LockedScheduler)
_broker_prepared_for: str | None = None  # the embedded broker this process made ready


def broker_urls(settings: Settings) -> tuple[str, str]:
    """(broker URL, result backend URL) for `settings`: Redis when set, SQLite files otherwise."""
    if settings.broker_url:
        return settings.broker_url, settings.result_backend or settings.broker_url
    data_dir = settings.data_dir.resolve()
    broker = f"sqla+sqlite:///{data_dir / 'broker.sqlite'}"
    return broker, settings.result_backend or f"db+sqlite:///{data_dir / 'celery-results.sqlite'}"


def configure(settings: Settings, eager: bool | None = None) -> Celery:
    """Point `app` at the broker of `settings` and keep the settings for the tasks.

    Args:
        settings: the process's settings (database, storage, broker, model server).
        eager: run tasks synchronously in the caller (tests without a worker); None keeps the
            current choice.
    """
    global _configured_for
    broker, backend = broker_urls(settings)
    if eager is None:
        eager = bool(_configured_for and _configured_for[2])
    embedded = not settings.broker_url
    with _lock:
        app.dataengine_settings = settings
        if _configured_for == (broker, backend, eager):
            return app
        app.close()  # drop pooled connections to a previous broker
        # close() keeps the producer pool, still bound to the previous broker: without this, tasks
        # sent after switching brokers would go to the old one.
        app.amqp._producer_pool = None
        app.conf.update(
            broker_url=broker,
            result_backend=backend,
            task_routes=TASK_ROUTES,
            task_default_queue="embed",
            task_acks_late=True,
            task_reject_on_worker_lost=True,
            worker_prefetch_multiplier=1,
            task_track_started=True,
            result_expires=7 * 24 * 3600,
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            task_always_eager=eager,
            task_eager_propagates=eager,
            broker_connection_retry_on_startup=True,
            worker_hijack_root_logger=False,
            # The SQLAlchemy transport hands its options to create_engine, so it gets none (it polls
            # every second, kombu's default).
            broker_transport_options={} if embedded else {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT},
            worker_enable_remote_control=not embedded,
            worker_send_task_events=not embedded,
            beat_scheduler="backend.worker.celery_app:LockedScheduler",
            beat_schedule={
                "sweep-stale-jobs": {"task": "jobs.sweep_stale_jobs", "schedule": settings.job_stale_seconds / 2},
                "start-due-retrain-rounds": {
                    "task": "retraining.start_due_rounds",
                    "schedule": RETRAIN_CHECK_SECONDS,
                },
                "start-due-scoring": {"task": "selection.start_due_scoring", "schedule": SCORE_CHECK_SECONDS},
            },
        )
        _configured_for = (broker, backend, eager)
    return app


def task_settings() -> Settings:
    """The settings tasks run with (set by `configure`; the environment's in a fresh worker)."""
    settings = getattr(app, "dataengine_settings", None)
    if settings is None:
        settings = configure(Settings()).dataengine_settings
    return settings


def enqueue(task_name: str, *args: object, task_id: str | None = None) -> str:
    """Send `task_name` with positional `args` (ids only, never ORM objects); return the task id.

    In eager mode the task runs here and now (``send_task`` would ignore eagerness).
    """
    if app.conf.task_always_eager:
        app.loader.import_default_modules()
        return app.tasks[task_name].apply(args=list(args), task_id=task_id).id
    prepare_embedded_broker()
    return app.send_task(task_name, args=list(args), task_id=task_id).id


def prepare_embedded_broker() -> None:
    """Make the embedded broker ready before this process first publishes or consumes: its data dir,
    its tables and one row per queue, made by one process at a time (an exclusive `fcntl.flock` on
    ``<data_dir>/broker.lock``); once per process and broker. Nothing to do with Redis.

    kombu's SQLAlchemy transport makes a queue's row the first time a process uses the queue, and two
    processes doing so at the same moment fail, one with ``UNIQUE constraint failed:
    kombu_queue.name``, an IntegrityError kombu does not catch: `dataengine up` starts the API, a
    worker and beat at once, so the API's first job could answer 500.
    """
    global _broker_prepared_for
    settings = getattr(app, "dataengine_settings", None)
    if settings is None or settings.broker_url or _broker_prepared_for == app.conf.broker_url:
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / BROKER_LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with app.connection_for_write() as connection:
            for queue in QUEUES:
                connection.default_channel.queue_declare(queue)
    _broker_prepared_for = app.conf.broker_url


@signals.celeryd_init.connect
@signals.beat_init.connect
def _on_worker_or_beat_init(**_: object) -> None:
    prepare_embedded_broker()


class BeatLocked(SystemExit):
    """Another beat holds the data dir's beat lock (a SystemExit: celery lets it end the process)."""


def hold_beat_lock(data_dir: Path) -> IO[str]:
    """Take the exclusive beat lock of `data_dir` without waiting; return the open lock file.

    The lock lasts as long as the returned file stays open (for a beat process: its whole life).

    Raises:
        BeatLocked: another process holds it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / BEAT_LOCK_FILE
    lock = open(path, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise BeatLocked(f"another celery beat holds {path}; one beat per data dir") from None
    return lock


class LockedScheduler(PersistentScheduler):
    """Celery's file-backed scheduler that first takes the data dir's beat lock.

    The lock is the process's, not the scheduler's, and is held until the process exits: beat builds
    a throwaway scheduler for its banner before the real one, and both must count as the same beat.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        global _beat_lock
        if _beat_lock is None:
            _beat_lock = hold_beat_lock(task_settings().data_dir)
        super().__init__(*args, **kwargs)


if not getattr(app, "dataengine_settings", None):
    configure(Settings())
