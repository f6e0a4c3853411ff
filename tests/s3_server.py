"""A real S3-protocol server for tests: moto's standalone server in its own process on 127.0.0.1.

Its own process, not a thread, so that what the server holds never counts in the memory a test
measures, and so that other processes under test (a worker, the model service) reach it as they
would reach MinIO. `start_s3_server()` is the helper (a context manager); the fixtures `s3_server`
(one per session) and `s3_bucket` (a new empty bucket per test) are registered for every test package
by tests/conftest.py. Credentials are moto's dummies, set in the environment (`S3Server.env`) for
boto3 in this process and to hand to child processes.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.ports import free_port

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    @property
    def env(self) -> dict[str, str]:
        """The variables a child process needs to reach the server with boto3."""
        return dict(CREDENTIALS)

    def storage_url(self, bucket: str, prefix: str = "") -> str:
        """The `open_storage` / ``DATAENGINE_STORAGE_URL`` value for `bucket` (and a key prefix)."""
        return f"s3://{bucket}/{prefix}?endpoint_url={self.endpoint_url}&region={REGION}"

    def create_bucket(self, name: str | None = None) -> str:
        """A new empty bucket (a fresh random name by default); its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        _client(self.endpoint_url).create_bucket(Bucket=name)
        return name


@functools.cache
def _client(endpoint_url: str) -> Any:
    """One boto3 client per server (building one costs a good fraction of a second)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@contextmanager
def start_s3_server() -> Iterator[S3Server]:
    """moto's server (``python -m moto.server``) on a free loopback port, stopped on exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS},
    )
    server = S3Server(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited with {process.returncode} before answering")
            try:
                httpx.get(server.endpoint_url, timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not answer within {START_TIMEOUT_S} s") from None
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto server for the session; its dummy credentials are in this process's environment."""
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        with start_s3_server() as server:
            yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new empty bucket on the session's server."""
    return s3_server.create_bucket()
