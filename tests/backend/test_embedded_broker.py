"""The embedded broker (kombu's SQLAlchemy transport on a SQLite file) shared by processes that start
at the same moment, as `dataengine up` starts the API, a worker and beat."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy

from backend.worker.celery_app import QUEUES

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLISHERS = 4

# One publisher: configure the app on the data dir, sleep until the common start time, send one task.
PUBLISH = """
import sys, time
from backend.core.config import Settings
from backend.worker import celery_app
celery_app.configure(Settings(data_dir=sys.argv[1], broker_url=None), eager=False)
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
celery_app.enqueue("jobs.sweep_stale_jobs")
"""


def test_processes_publishing_at_once_to_a_fresh_embedded_broker_all_succeed(tmp_path):
    """Before `prepare_embedded_broker`, two first publishes at the same moment raced to make the
    queue's row and one failed with ``UNIQUE constraint failed: kombu_queue.name`` (the API's 500)."""
    for attempt in range(5):  # the race is lost about half the time on the old code
        data_dir = tmp_path / f"data{attempt}"
        start = time.time() + 6  # every publisher has imported the app by then
        publishers = [
            subprocess.Popen(
                [sys.executable, "-c", PUBLISH, str(data_dir), str(start)],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(PUBLISHERS)
        ]
        outputs = [publisher.communicate(timeout=120)[0] for publisher in publishers]
        assert [publisher.returncode for publisher in publishers] == [0] * PUBLISHERS, "\n".join(outputs)
        engine = sqlalchemy.create_engine(f"sqlite:///{data_dir / 'broker.sqlite'}")
        with engine.connect() as connection:
            queues = connection.execute(sqlalchemy.text("SELECT name FROM kombu_queue")).scalars().all()
            messages = connection.execute(sqlalchemy.text("SELECT count(*) FROM kombu_message")).scalar()
        engine.dispose()
        assert sorted(queues) == sorted(QUEUES) and messages == PUBLISHERS
