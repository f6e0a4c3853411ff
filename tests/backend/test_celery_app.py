"""The Celery app's configuration, against the real Redis (skipped with the reason where it is absent)."""

from __future__ import annotations

import pytest

from backend.core.config import Settings
from backend.worker import celery_app
from tests.backend.celery_workers import redis_database

pytestmark = pytest.mark.redis


def test_switching_brokers_sends_tasks_to_the_new_one(tmp_path):
    """A process that moves from one broker to another (as the test suites do) must not keep
    publishing to the first one."""
    import redis

    first_url, second_url = redis_database(13), redis_database(14)
    first, second = (redis.Redis.from_url(url, socket_connect_timeout=2) for url in (first_url, second_url))
    try:
        first.ping()
    except redis.exceptions.RedisError as error:
        pytest.skip(f"Redis at {first_url} unreachable: {error}")
    first.flushdb()
    second.flushdb()
    settings = Settings(data_dir=tmp_path)
    try:
        for url in (first_url, second_url):
            settings.broker_url = url
            celery_app.configure(settings, eager=False)
            celery_app.app.send_task("embeddings.embed_images", args=[0], queue="embed")
        assert first.llen("embed") == 1 and second.llen("embed") == 1
    finally:
        first.flushdb()
        second.flushdb()
        celery_app.configure(Settings(data_dir=tmp_path), eager=False)
