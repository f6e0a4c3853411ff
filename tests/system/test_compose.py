"""docker-compose.yml keeps the deployment's promises (no docker needed: the file is read as data).

No two services share a volume and no Python service mounts any (everything goes through PostgreSQL,
Redis and the object store), only the model server reserves a GPU, every Celery queue has a worker,
exactly one beat runs, the API runs several processes, and every ``DATAENGINE_*`` variable is a
setting the backend reads, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.core.config import Settings
from backend.worker.celery_app import QUEUES

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
PYTHON_SERVICES = ("migrate", "api", "worker-embed", "worker-auto", "worker-train", "beat", "model-server")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else command


def _volumes(service: dict[str, Any]) -> list[str]:
    return [v.split(":")[0] if isinstance(v, str) else v["source"] for v in service.get("volumes", [])]


def test_no_volume_is_shared_and_no_python_service_mounts_one(services):
    used = Counter(volume for service in services.values() for volume in _volumes(service))
    assert all(count == 1 for count in used.values()), used
    assert {name: _volumes(services[name]) for name in PYTHON_SERVICES} == {name: [] for name in PYTHON_SERVICES}


def test_only_the_model_server_reserves_a_gpu(services):
    with_gpu = [name for name, service in services.items() if "gpu" in str(service.get("deploy", ""))]
    assert with_gpu == ["model-server"]
    assert "--storage" in " ".join(_command(services["model-server"]))


def test_every_queue_has_a_worker_and_one_beat_runs(services):
    served = set()
    for service in services.values():
        command = _command(service)
        if "worker" in command:
            served |= set(command[command.index("-Q") + 1].split(","))
    assert served == set(QUEUES)
    assert [name for name, service in services.items() if "beat" in _command(service)] == ["beat"]
    api = _command(services["api"])
    assert int(api[api.index("--workers") + 1]) > 1


def test_every_service_shares_the_one_object_store_and_reads_only_known_settings(services):
    known = {f"DATAENGINE_{name.upper()}" for name in Settings.model_fields} | {"DATAENGINE_HOME"}
    stores = set()
    for name in PYTHON_SERVICES:
        environment = services[name]["environment"]
        assert {key for key in environment if key.startswith("DATAENGINE_")} <= known, name
        stores.add(environment["DATAENGINE_STORAGE_URL"])
        assert environment["AWS_ACCESS_KEY_ID"] and environment["AWS_SECRET_ACCESS_KEY"], name
    assert len(stores) == 1 and next(iter(stores)).startswith("s3://"), stores
    assert "create-bucket" in services["model-server"]["depends_on"]
