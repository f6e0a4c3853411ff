"""Real Celery workers on real Redis for the worker-crash tests: a broker per suite and worker processes.

Each suite passes its own Redis database so that two suites running at once on one machine never take
each other's messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backend.core.config import Settings
from backend.worker import celery_app

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("DATAENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


def redis_database(number: int) -> str:
    """`REDIS_URL` with another database number."""
    return REDIS_URL.rsplit("/", 1)[0] + f"/{number}"


@contextmanager
def redis_broker(settings: Settings, url: str) -> Iterator[Settings]:
    """`settings` with Redis at `url` as the broker (emptied before and after); skips if Redis is absent."""
    import redis

    try:
        connection = redis.Redis.from_url(url, socket_connect_timeout=2)
        connection.ping()
    except redis.exceptions.RedisError as error:
        pytest.skip(f"Redis at {url} unreachable: {error}")
    connection.flushdb()  # no messages left by an earlier (killed) run
    settings.broker_url = url
    celery_app.configure(settings, eager=False)
    try:
        yield settings
    finally:
        connection.flushdb()
        celery_app.configure(Settings(data_dir=settings.data_dir), eager=False)


@contextmanager
def worker_processes(settings: Settings, queue: str, log_dir: Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    """Yield `start(name)`, which starts a real worker process on `queue`; all are stopped at the end."""
    started: list[subprocess.Popen] = []

    def start(name: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATAENGINE_DATA_DIR": str(settings.data_dir),
            "DATAENGINE_DATABASE_URL": settings.db_url,
            "DATAENGINE_STORAGE_ROOT": str(settings.storage_path),
            "DATAENGINE_SECRET_KEY": settings.ensure_secret_key(),
            "DATAENGINE_BROKER_URL": settings.broker_url,
            "OMP_NUM_THREADS": "2",
        }
        log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - the worker process owns it
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backend.worker.celery_app", "worker", "-Q", queue,
             "-P", "solo", "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "info"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
