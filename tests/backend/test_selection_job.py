"""The score job through the real in-process model service (eager Celery), on SQLite and PostgreSQL.

The model is the untrained vit_t the install creates on first use (weights and embeddings computed
once per session: `tests.backend.model_memo`); `score_images` runs for real.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from backend.selection.service import due_for_scoring
from backend.selection.tasks import start_due_scoring
from backend.tables import ImageScore, Project
from tests.backend.jobs_helpers import upload
from tests.backend.model_memo import memo_models_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("memo_models")


def job_of(client, response, headers) -> dict:
    assert response.status_code == 202, response.text
    return client.get(f"/api/jobs/{response.json()['id']}", headers=headers).json()


def test_score_job_scores_embedded_images_deterministically_and_beat_finds_what_is_due(
    client, db, eager, project, manager_headers, data_root
):
    image_ids = upload(client, manager_headers, project.id, data_root, 2)
    embedded = job_of(
        client, client.post(f"/api/projects/{project.id}/embed", headers=manager_headers), manager_headers
    )
    assert embedded["status"] == "succeeded", embedded
    db.expire_all()
    version_id = db.get(Project, project.id).active_model_version_id
    assert due_for_scoring(db) == [(project.id, version_id)]

    job = job_of(
        client, client.post(f"/api/projects/{project.id}/selection/score", headers=manager_headers), manager_headers
    )
    assert job["status"] == "succeeded", job
    assert job["kind"] == "score" and job["result"]["scored"] == 2 and job["result"]["ranked"] == 2
    db.expire_all()
    rows = {r.image_id: r for r in db.scalars(select(ImageScore))}
    assert sorted(rows) == image_ids
    first = {i: (r.pooled, r.uncertainty, r.details) for i, r in rows.items()}
    assert all(0 <= r.uncertainty <= 1 and r.model_version_id == version_id for r in rows.values())
    assert due_for_scoring(db) == []

    # Nothing new: a second run scores nothing and ranks again.
    again = job_of(
        client, client.post(f"/api/projects/{project.id}/selection/score", headers=manager_headers), manager_headers
    )
    assert again["result"]["scored"] == 0 and again["result"]["ranked"] == 2

    # Scores gone (as after a promotion to a version without them): beat starts the job, the same numbers.
    db.execute(delete(ImageScore))
    db.commit()
    started = start_due_scoring()
    assert len(started) == 1
    db.expire_all()
    assert {r.image_id: (r.pooled, r.uncertainty, r.details) for r in db.scalars(select(ImageScore))} == first

    view = client.get(f"/api/projects/{project.id}/selection", headers=manager_headers).json()
    assert view["unscored"] == 0 and sum(view["uncertainty_histogram"]) == 2


def test_score_route_is_for_job_starters_only(client, project, make_user, login):
    from backend.tables import Role

    outsider = login(make_user(Role.annotator))
    assert client.post(f"/api/projects/{project.id}/selection/score", headers=outsider).status_code == 404
    assert client.get(f"/api/projects/{project.id}/selection", headers=outsider).status_code == 404
