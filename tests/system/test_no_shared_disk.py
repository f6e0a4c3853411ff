"""No shared disk: the API, one Celery worker and the model service as separate processes, each in an
empty folder of its own, sharing only PostgreSQL, Redis and an S3 server, run the whole engine
through the HTTP API as its users would.

The processes (tests/system/processes.py) are started as docker-compose.yml starts its containers:
the API is uvicorn, the worker is ``celery worker`` on every queue with Redis as its broker, the model
service is ``python -m model_server serve --storage s3://...``; each gets its own cwd, HOME, TMPDIR
and data home and no variable of this test's environment but the shared services' addresses. Then,
step by step: the first admin (the CLI, a process of its own), users and a project, upload, embed,
annotate (claim and save masks), train a detector, move to stage 2, pre-fill, move to stage 3,
auto-annotate, retrain a round, promote it, export and download.

What shows that nothing is read from another process's folder:
- after every step, no process of any service (uvicorn's and Celery's children included) has its
  working directory or an open file in another service's folder;
- at the end, neither the API's folder nor the worker's holds a copy of any stored object (image,
  thumbnail, embedding, checkpoint, export), and the model service's holds copies of checkpoints
  only (its cache by sha256): all data went through the bucket, which holds every kind of object.

Skipped, with the reason, only when PostgreSQL or Redis is unreachable. Untrained vit_t, four DAVIS
images and the configurations of the API tests (tests/backend/stage1_objects.py, retraining_helpers.py,
test_auto_annotate.py), so it runs in a few minutes on two cores.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from backend.core.migrations import upgrade
from model_server.api import open_storage
from tests.backend.celery_workers import process_tree, redis_database
from tests.backend.conftest import _postgres_reachable, create_postgres_database, drop_postgres_database
from tests.backend.retraining_helpers import TINY
from tests.backend.stage1_objects import SMALL, davis_images, mask_rle
from tests.ports import free_port
from tests.s3_server import S3Server
from tests.system.processes import (
    WORKER_READY,
    Processes,
    Service,
    api_argv,
    create_admin_argv,
    model_service_argv,
    worker_argv,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

REDIS_DB = 9  # no other suite uses it (tests/backend: 11-14)
PASSWORD = "correct horse battery"
JOB_TIMEOUT_S = 240.0
FINISHED = ("succeeded", "failed", "cancelled")
# Open gates: the flow moves through the stages with the few masks of a test.
GATES = {
    "semi_automatic": {"min_masks": 1, "min_done_share": 0.0, "min_trained_models": 0, "min_detectors": 1},
    "fully_automatic": {"min_masks": 0, "min_trained_models": 0},
}
ANNOTATED, NEW = 3, 1  # DAVIS images annotated by hand, and images the detector then pre-fills
DETECTOR = {**SMALL, "min_boxes": 2}  # tests/backend/stage1_objects.py's tiny detector, on fewer objects
# The automatic generator's settings of tests/backend/test_auto_annotate.py: 16 points, no filtering.
AUTO = {"points_per_side": 4, "points_per_batch": 16, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
# Stored data that may be copied to a service's disk: the model service caches checkpoints by sha256.
CACHED_BY_MODEL_SERVICE = ("models/", "detectors/")


@pytest.fixture
def database_url() -> Iterator[str]:
    """A new migrated PostgreSQL database, dropped at the end (other tests never see it)."""
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    url = create_postgres_database()
    try:
        upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def redis_url() -> Iterator[str]:
    import redis

    url = redis_database(REDIS_DB)
    connection = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        connection.ping()
    except redis.exceptions.RedisError as error:
        pytest.skip(f"Redis at {url} unreachable: {error}")
    connection.flushdb()
    yield url
    connection.flushdb()


@dataclass
class Engine:
    processes: Processes
    api: Service
    worker: Service
    model: Service
    storage_url: str
    http: httpx.Client
    passed: list[str] = field(default_factory=list)

    @property
    def services(self) -> list[Service]:
        return [self.api, self.worker, self.model]

    def logs(self) -> str:
        return "\n".join(f"----- {s.name} -----\n{s.log()[-6000:]}" for s in self.processes.services)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """One step of the flow: on failure, say which step and the ones passed, with every log."""
        start = time.monotonic()
        try:
            yield
            self.check_isolation()
        except Exception as error:
            raise AssertionError(f"step {name!r} failed (passed: {self.passed}): {error}\n{self.logs()}") from error
        self.passed.append(name)
        print(f"passed: {name} ({time.monotonic() - start:.1f} s)")

    def check_isolation(self) -> None:
        """No process of a service works in, or holds a file open in, another service's folder."""
        for service in self.services:
            service.check_alive()
            others = [s.folder for s in self.services if s is not service]
            for info in process_tree(service.process.pid):
                for path in _open_paths(info.pid):
                    assert not any(path.is_relative_to(o) for o in others), (service.name, info.command, path)

    def wait_job(self, response: httpx.Response, headers: dict[str, str]) -> dict:
        assert response.status_code == 202, response.text
        job = response.json()
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while job["status"] not in FINISHED:
            for service in self.services:
                service.check_alive()
            assert time.monotonic() < deadline, f"job {job['id']} ({job['kind']}) not finished: {job}"
            time.sleep(0.5)
            job = self.http.get(f"/api/jobs/{job['id']}", headers=headers).json()
        assert job["status"] == "succeeded", job
        return job


def _open_paths(pid: int) -> list[Path]:
    """The working directory and the open files of `pid` (empty if it exited meanwhile)."""
    proc = Path(f"/proc/{pid}")
    links = [proc / "cwd"]
    try:
        links += list((proc / "fd").iterdir())
    except OSError:
        return []
    paths = []
    for link in links:
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("/"):
            paths.append(Path(target))
    return paths


@pytest.fixture
def engine(tmp_path, database_url, redis_url, s3_server: S3Server) -> Iterator[Engine]:
    storage_url = s3_server.storage_url(s3_server.create_bucket())
    shared = {
        **s3_server.env,
        "DATAENGINE_DATABASE_URL": database_url,
        "DATAENGINE_BROKER_URL": redis_url,
        "DATAENGINE_STORAGE_URL": storage_url,
        "DATAENGINE_SECRET_KEY": "system-test-secret-" + "x" * 32,
        "DATAENGINE_BCRYPT_ROUNDS": "4",
        "OMP_NUM_THREADS": "2",
    }
    model_port, api_port = free_port(), free_port()
    with Processes(tmp_path / "services", tmp_path / "logs", shared) as processes:
        model = processes.start("model-service", model_service_argv(storage_url, model_port))
        backend_env = {"DATAENGINE_MODEL_SERVER_URL": f"http://127.0.0.1:{model_port}"}
        api = processes.start("api", api_argv(api_port), backend_env)
        worker = processes.start("worker", worker_argv("embed,auto,train,webhooks", "all"), backend_env)
        model.wait_http(f"http://127.0.0.1:{model_port}/v1/health")
        api.wait_http(f"http://127.0.0.1:{api_port}/openapi.json")
        worker.wait_log(WORKER_READY)
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=60) as http:
            yield Engine(processes, api, worker, model, storage_url, http)


def _bearer(http: httpx.Client, username: str) -> dict[str, str]:
    response = http.post("/api/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_the_whole_engine_runs_on_processes_that_share_no_disk(engine: Engine, data_root):
    http = engine.http
    davis = davis_images(data_root)[: ANNOTATED + NEW]
    root = data_root / "davis345"

    with engine.step("first admin (CLI), users and login"):
        engine.processes.run("cli", create_admin_argv(PASSWORD))
        admin = _bearer(http, "admin")
        users = {}
        for role in ("manager", "annotator", "ml_engineer"):
            created = http.post(
                "/api/users", json={"username": role, "password": PASSWORD, "role": role}, headers=admin
            )
            assert created.status_code == 201, created.text
            users[role] = created.json()["id"]
        manager, annotator, ml = (_bearer(http, name) for name in ("manager", "annotator", "ml_engineer"))

    with engine.step("project and members"):
        created = http.post(
            "/api/projects", json={"name": "no shared disk", "settings": {"gates": GATES}}, headers=manager
        )
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        for role in ("annotator", "ml_engineer"):
            added = http.post(f"/api/projects/{pid}/members", json={"user_id": users[role]}, headers=manager)
            assert added.status_code == 201, added.text

    with engine.step("upload"):
        files = [("files", (Path(name).name, (root / name).read_bytes(), "image/jpeg")) for name, _ in davis]
        uploaded = http.post(f"/api/projects/{pid}/images", files=files, headers=manager)
        assert uploaded.status_code == 201, uploaded.text
        ids = [image["id"] for image in uploaded.json()["images"]]
        assert len(ids) == len(davis)
        thumbnail = http.get(f"/api/images/{ids[0]}/thumbnail", headers=manager, follow_redirects=True)
        assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8"

    with engine.step("embed"):
        job = engine.wait_job(http.post(f"/api/projects/{pid}/embed", headers=manager), manager)
        assert job["result"]["embedded"] == len(ids), job
        wire = http.get(f"/api/images/{ids[0]}/embedding", headers=annotator, follow_redirects=True)
        assert wire.status_code == 200 and len(wire.content) > 256 * 64 * 64, wire.text[:200]

    with engine.step("annotate: claim and save masks"):
        for image_id, (_, mask_names) in zip(ids[:ANNOTATED], davis[:ANNOTATED]):
            assert http.post(f"/api/images/{image_id}/claim", headers=annotator).status_code == 200
            for k, mask_name in enumerate(mask_names):
                saved = http.post(
                    f"/api/images/{image_id}/masks",
                    json={"client_id": f"m-{image_id}-{k}", "rle": mask_rle(root / mask_name), "clicks": 2},
                    headers=annotator,
                )
                assert saved.status_code == 201, saved.text
            assert http.post(f"/api/images/{image_id}/done", headers=annotator).status_code == 200

    with engine.step("train a detector"):
        job = engine.wait_job(http.post(f"/api/projects/{pid}/detector/train", json=DETECTOR, headers=manager), manager)
        detectors = http.get(f"/api/projects/{pid}/detectors", headers=manager).json()
        assert [d["status"] for d in detectors] == ["ready"] and job["result"]["detector_version_id"] == detectors[0][
            "id"
        ]
        moved = http.post(f"/api/projects/{pid}/stage", json={"stage": "semi_automatic"}, headers=manager)
        assert moved.status_code == 200, moved.text

    with engine.step("pre-fill with detector proposals"):
        params = {"score_thresh": 0.0, "pred_iou_thresh": 0.0, "max_boxes": 3}
        job = engine.wait_job(http.post(f"/api/projects/{pid}/detector/propose", json=params, headers=manager), manager)
        prefilled = [m for i in ids[ANNOTATED:] for m in http.get(f"/api/images/{i}/masks", headers=annotator).json()]
        assert job["result"]["masks"] >= 1 and prefilled and {m["source"] for m in prefilled} == {"detector"}
        moved = http.post(f"/api/projects/{pid}/stage", json={"stage": "fully_automatic"}, headers=manager)
        assert moved.status_code == 200, moved.text

    with engine.step("auto-annotate"):
        job = engine.wait_job(http.post(f"/api/projects/{pid}/auto-annotate", json=AUTO, headers=manager), manager)
        auto = [
            m for i in ids for m in http.get(f"/api/images/{i}/masks", headers=manager).json() if m["source"] == "auto"
        ]
        assert job["result"]["processed"] == len(ids) and auto, job

    with engine.step("retrain a round"):
        job = engine.wait_job(http.post(f"/api/projects/{pid}/retrain", json=TINY, headers=ml), ml)
        new_id = job["result"]["new_model_version_id"]
        versions = {v["id"]: v for v in http.get(f"/api/projects/{pid}/model-versions", headers=ml).json()}
        assert versions[new_id]["status"] == "ready" and "held_out" in versions[new_id]["metrics"]

    with engine.step("promote"):
        promoted = http.post(f"/api/projects/{pid}/model-versions/{new_id}/promote", headers=ml)
        assert promoted.status_code == 200, promoted.text
        model = http.get(f"/api/projects/{pid}/model", headers=annotator).json()
        assert model["id"] == new_id
        decoder = http.get(model["decoder_url"], headers=annotator, follow_redirects=True)
        assert decoder.status_code == 200 and decoder.content, decoder.text[:200]

    with engine.step("export and download"):
        job = engine.wait_job(
            http.post(f"/api/projects/{pid}/exports", json={"format": "sa1b"}, headers=manager), manager
        )
        download = http.get(job["result"]["download_url"], headers=manager, follow_redirects=True)
        assert download.status_code == 200, download.text[:200]
        with tarfile.open(fileobj=io.BytesIO(download.content)) as archive:
            names = archive.getnames()
        assert sum(name.endswith(".json") for name in names) == len(ids), names

    with engine.step("every stored object is in the bucket, none on a service's disk"):
        _assert_data_went_through_the_bucket(engine)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assert_data_went_through_the_bucket(engine: Engine) -> None:
    storage = open_storage(engine.storage_url)
    stored = {_sha256(storage.get(key)): key for key in storage.list()}
    kinds = {key.split("/")[0] for key in stored.values()}
    assert {"images", "thumbnails", "embeddings", "models", "detectors", "exports"} <= kinds, sorted(kinds)
    for service in engine.services:
        copies = {}
        for relative in service.files():
            key = stored.get(_sha256((service.folder / relative).read_bytes()))
            if key is not None:
                copies[str(relative)] = key
        if service is engine.model:
            copies = {path: key for path, key in copies.items() if not key.startswith(CACHED_BY_MODEL_SERVICE)}
        assert copies == {}, f"{service.name} keeps stored objects on its own disk: {copies}"
    print({service.name: len(service.files()) for service in engine.services}, "files;", len(stored), "objects")
