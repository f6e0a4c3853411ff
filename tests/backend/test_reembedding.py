"""After a promotion changed the image encoder: re-embedding, serving, the dashboard (issue 16).

Version A (the untrained vit_t) serves a project whose images it embedded; version B is another
vit_t checkpoint (other seed: another encoder_sha256), as a round that trained the image encoder
registers one. Promoting B starts the project's embed job; Celery is NOT eager here, so the job
stays queued until the test runs its task. Meanwhile each image is served with B's embedding where
it exists and A's otherwise, `X-Model-Version` naming the version whose encoder made the bytes (the
browser decodes them with that version's decoder, `GET /api/model-versions/{id}`). On SQLite and
PostgreSQL, with the real in-process model service (`tests.backend.model_memo`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sqlalchemy import text

from backend.clients.model_server import model_service
from backend.dashboard.service import embedded_count
from backend.embeddings import service as embeddings
from backend.embeddings import tasks
from backend.model_versions.service import import_checkpoint
from backend.storage import storage_for
from backend.tables import Image, Job, JobStatus, ModelOrigin, ModelStatus, ModelVersion
from model_server.sam.build import build_sam
from tests.backend.jobs_helpers import upload
from tests.backend.model_memo import memo_models_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("memo_models")


def _new_encoder_version(db, settings, tmp_path: Path) -> ModelVersion:
    """Another vit_t checkpoint (seed 7): its image encoder differs from the untrained default's."""
    checkpoint = tmp_path / "vit_t_seed7.pth"
    torch.save(build_sam("vit_t", seed=7).state_dict(), checkpoint)
    storage = storage_for(settings)
    version, created = import_checkpoint(db, storage, model_service(settings, storage), checkpoint, "vit_t")
    assert created
    return version


def _get(client, headers, image_id: int, **params):
    return client.get(f"/api/images/{image_id}/embedding", headers=headers, params=params)


def _served(client, headers, image_id: int, **params) -> tuple[int, bytes]:
    response = _get(client, headers, image_id, **params)
    assert response.status_code == 200, response.text
    return int(response.headers["x-model-version"]), response.content


def test_promoting_a_new_encoder_re_embeds_and_never_mixes_versions(
    client, db, project, manager_headers, ml, data_root, settings, tmp_path
):
    image_ids = upload(client, manager_headers, project.id, data_root, 3)
    before = {image_id: _served(client, manager_headers, image_id) for image_id in image_ids}  # computed by A
    a_model = client.get(f"/api/projects/{project.id}/model", headers=manager_headers).json()
    a_id = a_model["id"]
    assert {version for version, _ in before.values()} == {a_id}

    b = _new_encoder_version(db, settings, tmp_path)
    assert b.encoder_sha256 != db.get_one(ModelVersion, a_id).encoder_sha256 and "encoder_from" not in b.artifacts
    # The round registering B embedded its held-out images with B's encoder (here: the first image).
    storage = storage_for(settings)
    held_out = db.get_one(Image, image_ids[0])
    embeddings.compute_embeddings(db, storage, model_service(settings, storage), b, [held_out])

    promoted = client.post(f"/api/projects/{project.id}/model-versions/{b.id}/promote", headers=ml)
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    assert body["previous_id"] == a_id and body["embeddings_reused"] == 0
    job = body["embed_job"]
    assert job is not None and job["kind"] == "embed" and job["status"] == "queued"
    assert job["params"]["model_version_id"] == b.id

    # Unpinned: B's embedding where stored, A's (the previous one) for the others, each named.
    version, b_bytes = _served(client, manager_headers, image_ids[0])
    assert version == b.id and b_bytes != before[image_ids[0]][1]
    fallback = _get(client, manager_headers, image_ids[1])
    assert fallback.status_code == 200 and fallback.headers["x-model-version"] == str(a_id)
    assert fallback.content == before[image_ids[1]][1]
    assert fallback.headers["cache-control"] == "private, no-cache"  # the plain URL changes answer later
    assert f'"emb-{a_id}-{image_ids[1]}-' in fallback.headers["etag"]
    revalidated = _get(client, {**manager_headers, "If-None-Match": fallback.headers["etag"]}, image_ids[1])
    assert revalidated.status_code == 304 and revalidated.headers["x-model-version"] == str(a_id)

    # The decoder of each version named by X-Model-Version, as the project's model answer.
    assert client.get(f"/api/model-versions/{a_id}", headers=manager_headers).json() == a_model
    b_model = client.get(f"/api/model-versions/{b.id}", headers=manager_headers).json()
    assert b_model == client.get(f"/api/projects/{project.id}/model", headers=manager_headers).json()
    assert b_model["id"] == b.id and b_model["origin"] == "official" and b_model["notice"] is None
    assert b_model["decoder_url"] == f"/api/model-versions/{b.id}/decoder.onnx"

    # Pinned: A only while B's embedding of the image is missing; B (active) always.
    pinned_a = _get(client, manager_headers, image_ids[1], model_version=a_id)
    assert pinned_a.status_code == 200 and pinned_a.headers["x-model-version"] == str(a_id)
    assert pinned_a.content == before[image_ids[1]][1]
    assert pinned_a.headers["cache-control"].endswith("immutable")
    stale = _get(client, manager_headers, image_ids[0], model_version=a_id)
    assert stale.status_code == 409 and str(a_id) in stale.json()["detail"]
    assert _get(client, manager_headers, image_ids[1], model_version=999_999).status_code == 409
    assert _served(client, manager_headers, image_ids[0], model_version=b.id) == (b.id, b_bytes)
    on_demand = _served(client, manager_headers, image_ids[2], model_version=b.id)  # the active: computed now
    assert on_demand[0] == b.id and on_demand[1] != before[image_ids[2]][1]
    assert _served(client, manager_headers, image_ids[2]) == on_demand

    # The dashboard: coverage of the serving model while its job is pending.
    coverage = client.get(f"/api/projects/{project.id}/dashboard", headers=manager_headers).json()["embeddings"]
    assert coverage["model_version_id"] == b.id and (coverage["embedded"], coverage["images"]) == (2, 3)
    assert coverage["job"]["id"] == job["id"] and coverage["job"]["status"] == "queued"

    # The job embeds only what lacks B's embedding, then every image serves B and A is refused.
    assert tasks.embed_images.apply(args=[job["id"]]).get() == "succeeded"
    finished = client.get(f"/api/jobs/{job['id']}", headers=manager_headers).json()
    assert finished["status"] == "succeeded", finished
    assert finished["result"]["embedded"] == 1 and finished["result"]["already_done"] == 2
    for image_id in image_ids:
        assert _served(client, manager_headers, image_id)[0] == b.id
        assert _get(client, manager_headers, image_id, model_version=a_id).status_code == 409
    assert _get(client, {**manager_headers, "If-None-Match": fallback.headers["etag"]}, image_ids[1]).status_code == 200
    coverage = client.get(f"/api/projects/{project.id}/dashboard", headers=manager_headers).json()["embeddings"]
    assert (coverage["embedded"], coverage["images"], coverage["job"]) == (None, 3, None)  # counted only while pending


def test_without_a_pending_job_the_active_version_answers(
    client, db, project, manager_headers, ml, data_root, settings, tmp_path
):
    """The previous version's embedding is served only while the embed job may still reach the image:
    once the job is over (here: failed), a missing embedding is computed with the active version."""
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    a_id, _ = _served(client, manager_headers, image_id)
    b = _new_encoder_version(db, settings, tmp_path)
    job = client.post(f"/api/projects/{project.id}/model-versions/{b.id}/promote", headers=ml).json()["embed_job"]
    assert _served(client, manager_headers, image_id)[0] == a_id
    db.get_one(Job, job["id"]).status = JobStatus.failed
    db.commit()
    assert _served(client, manager_headers, image_id)[0] == b.id
    assert _get(client, manager_headers, image_id, model_version=a_id).status_code == 409


def test_a_version_with_the_same_encoder_reuses_embeddings(client, db, project, manager_headers, ml, data_root):
    """A decoder-only round's version (same image encoder): promotion adds its rows on the same
    objects, starts no job, and the endpoint serves it at once."""
    image_ids = upload(client, manager_headers, project.id, data_root, 2)
    a_id = {_served(client, manager_headers, image_id)[0] for image_id in image_ids}.pop()
    a = db.get_one(ModelVersion, a_id)
    twin = ModelVersion(
        project_id=project.id,
        parent_id=a.id,
        name="decoder-only round",
        architecture=a.architecture,
        origin=ModelOrigin.trained,
        status=ModelStatus.ready,
        sha256=a.sha256,
        encoder_sha256=a.encoder_sha256,
        artifacts={**a.artifacts, "encoder_from": a.id},
        metrics={},
        hyperparameters={"encoder_mode": "frozen"},
    )
    db.add(twin)
    db.commit()
    body = client.post(f"/api/projects/{project.id}/model-versions/{twin.id}/promote", headers=ml).json()
    assert body["embed_job"] is None and body["embeddings_reused"] == 2
    assert {_served(client, manager_headers, image_id)[0] for image_id in image_ids} == {twin.id}
    coverage = client.get(f"/api/projects/{project.id}/dashboard", headers=manager_headers).json()["embeddings"]
    assert coverage == {"model_version_id": twin.id, "embedded": None, "images": 2, "job": None}


def test_dashboard_rounds_show_whole_model_and_architecture_change(client, db, project, manager_headers):
    rounds = [
        ModelVersion(
            project_id=project.id,
            name=name,
            architecture=arch,
            origin=ModelOrigin.trained,
            status=ModelStatus.ready,
            metrics=metrics,
            hyperparameters=hyperparameters,
            artifacts={},
        )
        for name, arch, metrics, hyperparameters in [
            ("decoder round", "vit_b", {}, {"encoder_mode": "frozen"}),
            ("old round", "vit_b", {}, None),
            (
                "scaled up",
                "vit_h",
                {"architecture_change": {"from": "vit_b", "from_id": 1, "to": "vit_h"}},
                {"encoder_mode": "lora", "lora_rank": 8},
            ),
        ]
    ]
    db.add_all(rounds)
    db.commit()
    models = client.get(f"/api/projects/{project.id}/dashboard", headers=manager_headers).json()["models"]
    shown = {m["name"]: (m["encoder_trained"], m["architecture_change"]) for m in models}
    assert shown == {"decoder round": (False, None), "old round": (False, None), "scaled up": (True, "vit_b → vit_h")}
    coverage = client.get(f"/api/projects/{project.id}/dashboard", headers=manager_headers).json()["embeddings"]
    assert coverage == {"model_version_id": None, "embedded": None, "images": 0, "job": None}


def test_coverage_count_uses_indexes(db):
    """The dashboard's coverage COUNT reads the images' project index and the embeddings' unique
    (image, version) index, never a scan of either table."""
    statement = embedded_count(1, 1).compile(db.get_bind(), compile_kwargs={"literal_binds": True})
    if db.get_bind().dialect.name == "sqlite":
        plan = " | ".join(str(row[-1]) for row in db.execute(text(f"EXPLAIN QUERY PLAN {statement}")))
        assert "SCAN" not in plan, plan
        assert "SEARCH images USING" in plan and "SEARCH embeddings USING COVERING INDEX" in plan, plan
    else:
        db.execute(text("SET LOCAL enable_seqscan = off"))  # tiny tables: otherwise a scan is cheapest
        plan = " | ".join(row[0] for row in db.execute(text(f"EXPLAIN {statement}")))
        assert "Seq Scan" not in plan, plan
        db.rollback()
