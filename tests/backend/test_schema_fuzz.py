"""Schema fuzzing of the whole API with schemathesis: no 5xx for any input, responses as documented.

Every operation of `/openapi.json` gets `EXAMPLES` generated requests of valid data and `EXAMPLES`
of invalid data (wrong types, out-of-range numbers, missing and unknown fields, odd strings), as an
admin and unauthenticated, from a fixed seed (`derandomize`), on SQLite and PostgreSQL. Path ids
point at real objects of one project half of the time (a random id only reaches the 404 of the
authorization dependency, never the body's validation), and the operations that delete run last.
Each response must be below 500 and conform to the schema: documented status code, content type
and body schema (`ErrorOut` for every error).

The number of requests sent is printed at the end (`-s` shows it); it goes into notes and the README.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import Session

from backend.jobs.service import create_job
from backend.tables import JobStatus, User
from tests.backend.test_authorization import World

EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


def _real_ids(world: World) -> dict[str, int]:
    mask = world.fresh_mask(world.admin)
    job = create_job(world.db, "export", world.project.id, world.admin.id)
    job.status = JobStatus.succeeded  # finished: an event stream ends at once
    world.db.commit()
    return {
        "project_id": world.project.id,
        "image_id": world.image.id,
        "mask_id": mask.id,
        "job_id": job.id,
        "version_id": world.version_id,
        "user_id": world.members[next(iter(world.members))].id,
    }


def _fuzz(operation: Any, headers: dict[str, str], ids: dict[str, int]) -> int:
    """Send the operation's generated requests; returns how many were sent. Fails on a bad answer."""
    names = [p.name for p in operation.iter_parameters() if p.location == "path"]
    sent = 0
    for mode in MODES:
        real = operation.as_strategy(generation_mode=mode, path_parameters={n: ids[n] for n in names if n in ids})
        strategy = st.one_of(real, operation.as_strategy(generation_mode=mode)) if names else real

        @hypothesis.settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.generate],
        )
        @hypothesis.given(case=strategy)
        def run(case: Any) -> None:
            nonlocal sent
            response = case.call(headers=headers)
            sent += 1
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # Nothing of the operation can be invalid (no parameters, no body): only valid requests exist.
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    return sent


@pytest.fixture
def world(
    client: TestClient,
    db: Session,
    make_user: Callable[..., User],
    login: Callable[[User], dict[str, str]],
    image_bytes: bytes,
) -> World:
    return World(client, db, make_user, login, image_bytes)


def test_no_server_error_for_any_generated_request(world: World, client: TestClient) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: op.method.upper() == "DELETE")  # what deletes goes last
    ids = _real_ids(world)
    total, failures = 0, []
    for headers in (world.login(world.admin), {}):
        for operation in operations:
            try:
                total += _fuzz(operation, headers, ids)
            except Exception as error:
                failures.append(f"{operation.label} ({'admin' if headers else 'anonymous'}): {error}")
    print(f"\nschema fuzzing: {total} requests over {len(operations)} operations, {len(failures)} failing")
    assert failures == [], "\n\n".join(failures)
    assert total > len(operations) * EXAMPLES
