"""`dataengine up`: the whole product on one machine with one command (the embedded mode).

In order: migrate the database; on the first run create an `admin` user and print its password
(once; it is not stored in clear anywhere); create the default `untrained` model version (weights
and browser decoder, written once); start one Celery worker process (queues embed, auto, train,
with the beat schedule inside it; broker and results in SQLite files under the data dir, so no
server is needed; the model runs inside the worker); then serve the API and the built frontend
with uvicorn in this process. Ctrl-C stops uvicorn, then the worker (a warm shutdown: the running
task finishes or, past the grace period, its message goes back to the queue), and exits.

With `DATAENGINE_BROKER_URL` set, the worker uses that broker instead (docker-compose runs the
pieces as separate services and does not use this command).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from backend.core.config import Settings

WORKER_GRACE_SECONDS = 30
REPO_ROOT = Path(__file__).resolve().parents[1]


def register_up(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("up", help="migrate, then run the API, a worker and the model (embedded mode)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.set_defaults(func=up)


def _resolved_settings() -> Settings:
    settings = Settings()
    settings.data_dir = settings.data_dir.resolve()
    settings.storage_root = settings.storage_path.resolve()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.ensure_secret_key()
    return settings


def create_first_admin(settings: Settings) -> str | None:
    """Create `admin` with a random password if the install has no admin; return the password."""
    from sqlalchemy import select

    from backend.core.db import make_engine, make_session_factory
    from backend.models import Role, User
    from backend.users.service import create_user

    engine = make_engine(settings.db_url)
    try:
        with make_session_factory(engine)() as db:
            if db.scalar(select(User.id).where(User.role == Role.admin)) is not None:
                return None
            password = secrets.token_urlsafe(12)
            create_user(db, "admin", password, Role.admin, settings.bcrypt_rounds)
            return password
    finally:
        engine.dispose()


def create_default_model(settings: Settings) -> None:
    from backend.clients.model_server import ModelServerClient
    from backend.core.db import make_engine, make_session_factory
    from backend.model_versions.service import ensure_default_version
    from backend.storage import LocalStorage

    engine = make_engine(settings.db_url)
    try:
        with make_session_factory(engine)() as db:
            version = ensure_default_version(db, LocalStorage(settings.storage_path), ModelServerClient(), settings)
            print(f"default model: version {version.id}, {version.name} (origin {version.origin.value})", flush=True)
    finally:
        engine.dispose()


def worker_environment(settings: Settings) -> dict[str, str]:
    """The worker's environment: the same settings as this process, spelled as DATAENGINE_* variables."""
    env = {**os.environ,
           "DATAENGINE_DATA_DIR": str(settings.data_dir),
           "DATAENGINE_STORAGE_ROOT": str(settings.storage_path),
           "DATAENGINE_DATABASE_URL": settings.db_url,
           "DATAENGINE_SECRET_KEY": settings.ensure_secret_key()}
    return env


def start_worker(settings: Settings) -> subprocess.Popen:
    """One worker for every queue, beat inside, one task at a time (the CPU model uses every core)."""
    from backend.worker.celery_app import QUEUES

    command = [sys.executable, "-m", "celery", "-A", "backend.worker.celery_app", "worker",
               "-Q", ",".join(QUEUES), "-P", "solo", "-B",
               "-s", str(settings.data_dir / "celerybeat-schedule"),
               "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info"]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=worker_environment(settings), start_new_session=True)


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is not None:
        return
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=WORKER_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def up(args: argparse.Namespace) -> int:
    import uvicorn

    from backend.core.migrations import upgrade
    from backend.main import create_app

    settings = _resolved_settings()
    upgrade(settings.db_url)
    print(f"database ready ({settings.db_url})", flush=True)
    password = create_first_admin(settings)
    if password:
        print(f"created user 'admin' with password: {password}  (shown once; change it after logging in)", flush=True)
    create_default_model(settings)
    worker = start_worker(settings)
    print(f"worker started (pid {worker.pid}); serving http://{args.host}:{args.port}", flush=True)
    try:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    finally:
        stop_worker(worker)
        print("stopped", flush=True)
    return 0
