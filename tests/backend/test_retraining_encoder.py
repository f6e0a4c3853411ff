"""Whole-model retraining rounds through the API (eager Celery, SQLite and PostgreSQL), on the tiny
`vit_test` encoder that trains on a CPU in seconds (`Settings.allow_cpu_encoder_training` set here,
as a test config may): the round trains the image encoder on the images, registers a version with the
new encoder's identity, and evaluates it on held-out embeddings computed with that new encoder (whose
rows it records); the parent and the active version are each evaluated with their own. Without the
setting the job fails with the model side's CPU message; a round from another architecture records
the change; bad parameters are a 422."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from backend.clients import model_server
from backend.jobs import service as jobs
from backend.jobs.runner import run_job
from backend.model_versions.service import record_info
from backend.projects.service import create_project
from backend.retraining import tasks
from backend.retraining.schemas import RetrainParams
from backend.storage import storage_for
from backend.tables import Embedding, Job, ModelVersion, Project
from backend.tables.enums import JobStatus, ModelOrigin, ModelStatus
from backend.worker import celery_app
from tests.backend.retraining_helpers import TINY, images_with_masks

# Two steps of two masks each; the encoder trained on the images (1024 frame) of vit_test.
WHOLE = {**TINY, "batch_size": 2, "encoder_mode": "full"}


@pytest.fixture
def allow_cpu() -> bool:
    return True


@pytest.fixture
def settings(settings, allow_cpu):
    """The shared test settings, with encoder training on a CPU allowed unless a test says otherwise."""
    settings.allow_cpu_encoder_training = allow_cpu
    return settings


def _global_version(db, settings, architecture: str) -> ModelVersion:
    """Seeded random weights of `architecture` registered as a global version, written through the model service."""
    storage = storage_for(settings)
    key = f"models/untrained/{architecture}/checkpoint.pth"
    version = ModelVersion(
        project_id=None,
        name=f"untrained {architecture}",
        architecture=architecture,
        origin=ModelOrigin.untrained,
        status=ModelStatus.ready,
        metrics={},
        artifacts={"checkpoint": key},
    )
    record_info(version, model_server.model_service(settings, storage).create_untrained(architecture, key))
    db.add(version)
    db.commit()
    return version


@pytest.fixture
def vit_test(db, settings, project) -> ModelVersion:
    """The project served by untrained vit_test weights."""
    version = _global_version(db, settings, "vit_test")
    db.get_one(Project, project.id).active_model_version_id = version.id
    db.commit()
    return version


@pytest.fixture
def evaluations(monkeypatch) -> list[tuple[str, list[str]]]:
    """(checkpoint sha256, embedding keys of the samples) of every evaluation the rounds ask for."""
    calls: list[tuple[str, list[str]]] = []
    real = tasks.model_service

    class Recording:
        def __init__(self, service: Any) -> None:
            self.service = service

        def __getattr__(self, name: str) -> Any:
            return getattr(self.service, name)

        def evaluate(self, model, samples, **kwargs):
            calls.append((model.sha256, [sample.embedding.key for sample in samples]))
            return self.service.evaluate(model, samples, **kwargs)

    monkeypatch.setattr(tasks, "model_service", lambda settings, storage: Recording(real(settings, storage)))
    return calls


def _round(client, headers, project_id: int, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/api/projects/{project_id}/retrain", headers=headers, json=body)
    assert response.status_code == 202, response.text
    return client.get(f"/api/jobs/{response.json()['id']}", headers=headers).json()


def test_whole_model_round_changes_the_encoder_and_evaluates_with_its_embeddings(
    client, db, settings, eager, project, ml, manager_headers, data_root, vit_test, evaluations
):
    images_with_masks(client, manager_headers, project.id, data_root, 4)
    job = _round(client, ml, project.id, WHOLE)
    assert job["status"] == "succeeded", job
    assert job["result"]["step"] == job["result"]["total_steps"] == 2

    db.expire_all()
    new = db.get_one(ModelVersion, job["result"]["new_model_version_id"])
    assert new.parent_id == vit_test.id and new.architecture == "vit_test" and new.origin == ModelOrigin.trained
    assert new.encoder_sha256 is not None and new.encoder_sha256 != vit_test.encoder_sha256
    assert new.metrics["held_out_encoder_sha256"] == new.encoder_sha256
    assert "encoder_from" not in new.artifacts  # that would say "the parent's encoder"
    assert new.hyperparameters["encoder_mode"] == "full" and new.hyperparameters["accumulation_steps"] == 1
    assert "architecture_change" not in new.metrics and "active_held_out" not in new.metrics
    assert new.name == f"round 1 (from #{vit_test.id})"

    # The new version's rows for the held-out images point at objects of the NEW encoder, stored.
    held_out = set(new.data_snapshot["held_out_image_ids"])
    rows = db.scalars(select(Embedding).where(Embedding.model_version_id == new.id)).all()
    assert {row.image_id for row in rows} == held_out and len(rows) == len(held_out)
    storage = storage_for(settings)
    assert all(new.encoder_sha256 in row.storage_key and storage.exists(row.storage_key) for row in rows)
    # The parent's embeddings were computed for its own held-out evaluation only, not for the images
    # the round trained on (it trained on the images themselves).
    parent_rows = db.scalars(select(Embedding).where(Embedding.model_version_id == vit_test.id)).all()
    assert {row.image_id for row in parent_rows} == held_out

    # Each version was evaluated on the same held-out images with its own encoder's embeddings.
    assert sorted(sha for sha, _ in evaluations) == sorted([new.sha256, vit_test.sha256])
    keys = dict(evaluations)
    assert set(keys[new.sha256]) == {row.storage_key for row in rows}
    assert set(keys[vit_test.sha256]) == {row.storage_key for row in parent_rows}
    assert not set(keys[new.sha256]) & set(keys[vit_test.sha256])
    for side in ("held_out", "parent_held_out"):
        assert new.metrics[side]["n_samples"] == new.data_snapshot["held_out_masks"] >= 1

    # Listed like any round, with the encoder mode for the ML page.
    listed = client.get(f"/api/projects/{project.id}/model-versions", headers=ml).json()
    assert [v["hyperparameters"]["encoder_mode"] for v in listed if v["id"] == new.id] == ["full"]


class WorkerLost(BaseException):
    """The worker process dying mid-round: no handler of the round or the job runner sees it."""


def test_a_requeued_encoder_round_resumes_from_its_work_prefix(
    client, db, settings, project, ml, manager_headers, data_root, vit_test, monkeypatch
):
    images_with_masks(client, manager_headers, project.id, data_root, 2)
    params = RetrainParams(**WHOLE).model_dump()
    inputs = {"model_version_id": vit_test.id, "active_model_version_id": vit_test.id, "mask_watermark": 0}
    job = jobs.create_job(db, "train", project.id, None, params={**inputs, "params": params})
    db.commit()
    trained: list[str] = []  # sha256 of the weights each delivery evaluates first
    steps: list[int] = []  # training steps each delivery reported
    real = tasks.model_service

    class DiesAfterTraining:
        def __init__(self, service: Any) -> None:
            self.service = service

        def __getattr__(self, name: str) -> Any:
            return getattr(self.service, name)

        def retrain(self, model, samples, config, out_key, *, progress, **kwargs):
            def count(step: int, total: int, loss: float) -> None:
                steps.append(step)
                progress(step, total, loss)

            return self.service.retrain(model, samples, config, out_key, progress=count, **kwargs)

        def evaluate(self, model, samples, **kwargs):
            if not trained:
                trained.append(model.sha256)
                raise WorkerLost
            return self.service.evaluate(model, samples, **kwargs)

    monkeypatch.setattr(tasks, "model_service", lambda settings, storage: DiesAfterTraining(real(settings, storage)))
    with pytest.raises(WorkerLost):
        run_job(job.id, tasks.run_round, settings)
    assert steps == [1, 2] and list(storage_for(settings).list(f"training/job-{job.id}/"))
    db.expire_all()
    assert db.get_one(Job, job.id).status == JobStatus.running  # until the sweep sees its heartbeat stop

    celery_app.configure(settings, eager=True)  # the sweep's requeue runs the round again right here
    try:
        assert jobs.sweep_stale_jobs(db, stale_after=timedelta(0)) == [(job.id, "requeued")]
    finally:
        celery_app.configure(settings, eager=False)
    db.expire_all()
    done = db.get_one(Job, job.id)
    assert done.status == JobStatus.succeeded and done.attempts == 2, done.error
    assert steps == [1, 2]  # the second delivery resumed after the last checkpointed step
    result = done.result
    assert result["step"] == 2 and [point[0] for point in result["loss_curve"]] == [1, 2]
    assert result["loss"] == result["loss_curve"][-1][1] is not None  # the first delivery's, not NaN
    (version,) = db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id)).all()
    assert version.id == done.result["new_model_version_id"] and version.sha256 == trained[0]
    assert version.encoder_sha256 != vit_test.encoder_sha256
    assert list(storage_for(settings).list(f"training/job-{job.id}/")) == []


@pytest.mark.parametrize("allow_cpu", [False])
def test_encoder_round_on_a_cpu_fails_with_a_clear_message_unless_allowed(
    client, db, settings, eager, project, ml, manager_headers, data_root, vit_test
):
    assert settings.allow_cpu_encoder_training is False  # the default of Settings
    images_with_masks(client, manager_headers, project.id, data_root, 2)
    job = _round(client, ml, project.id, {**WHOLE, "encoder_mode": "last_k", "encoder_last_k": 1})
    assert job["status"] == "failed", job
    assert "CPU" in job["error"] and "frozen" in job["error"], job["error"]
    assert "DATAENGINE_ALLOW_CPU_ENCODER_TRAINING" in job["error"]
    db.expire_all()
    assert db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id)).all() == []
    assert list(storage_for(settings).list(f"models/projects/{project.id}/")) == []


def test_round_from_another_architecture_records_the_change_and_beats_the_active_version(
    client, db, settings, eager, project, ml, manager_headers, data_root, vit_test, evaluations
):
    images_with_masks(client, manager_headers, project.id, data_root, 2)
    vit_t = _global_version(db, settings, "vit_t")  # e.g. an imported checkpoint of another size
    job = _round(
        client,
        ml,
        project.id,
        {**WHOLE, "encoder_mode": "lora", "lora_rank": 2, "from_model_version_id": vit_t.id, "auto_promote": True},
    )
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["model_version_id"] == vit_t.id and result["active_model_version_id"] == vit_test.id

    db.expire_all()
    new = db.get_one(ModelVersion, result["new_model_version_id"])
    assert new.parent_id == vit_t.id and new.architecture == "vit_t"
    assert new.metrics["architecture_change"] == {"from": "vit_test", "from_id": vit_test.id, "to": "vit_t"}
    assert new.name == f"round 1 (from #{vit_t.id}, vit_test → vit_t)"
    assert new.hyperparameters["encoder_mode"] == "lora" and new.hyperparameters["lora_rank"] == 2
    # Three evaluations on the same held-out masks, each with its own encoder's embeddings; the
    # auto-promotion baseline is the version serving the project, not the one the round started from.
    assert {"held_out", "parent_held_out", "active_held_out"} <= set(new.metrics)
    assert new.metrics["active_id"] == vit_test.id
    assert sorted(sha for sha, _ in evaluations) == sorted([new.sha256, vit_t.sha256, vit_test.sha256])
    assert len({key for _, keys in evaluations for key in keys}) == 3 * len(new.data_snapshot["held_out_image_ids"])
    better = tasks.service.is_better(new.metrics["held_out"], new.metrics["active_held_out"])
    assert result["promoted"] is better
    db.expire_all()
    assert db.get_one(Project, project.id).active_model_version_id == (new.id if better else vit_test.id)


def test_decoder_round_from_another_version_keeps_that_versions_encoder(
    client, db, settings, eager, project, ml, manager_headers, data_root, vit_test
):
    images_with_masks(client, manager_headers, project.id, data_root, 2)
    other = _global_version(db, settings, "vit_test")  # same architecture: no architecture change
    other.name = "another vit_test"
    db.commit()
    job = _round(client, ml, project.id, {**TINY, "from_model_version_id": other.id})
    assert job["status"] == "succeeded", job
    db.expire_all()
    new = db.get_one(ModelVersion, job["result"]["new_model_version_id"])
    assert new.parent_id == other.id and new.encoder_sha256 == other.encoder_sha256
    assert new.artifacts["encoder_from"] == other.id and new.hyperparameters["encoder_mode"] == "frozen"
    assert "architecture_change" not in new.metrics and "held_out_encoder_sha256" not in new.metrics
    assert new.metrics["active_id"] == vit_test.id and "active_held_out" in new.metrics
    assert db.scalars(select(Embedding).where(Embedding.model_version_id == new.id)).all() == []


def test_bad_round_parameters_are_refused(client, db, settings, project, ml, manager_headers, data_root, make_user):
    images_with_masks(client, manager_headers, project.id, data_root, 2)
    url = f"/api/projects/{project.id}/retrain"
    for bad in (
        {"encoder_mode": "everything"},
        {"encoder_mode": "last_k", "encoder_last_k": 0},
        {"encoder_mode": "lora", "lora_rank": 0},
        {"encoder_mode": "lora", "lora_rank": 257},
        {"accumulation_steps": 0},
        {"from_model_version_id": 0},
        {"from_model_version_id": "1"},
    ):
        response = client.post(url, headers=ml, json={**TINY, **bad})
        assert response.status_code == 422, (bad, response.text)
    response = client.post(url, headers=ml, json={**TINY, "batch_size": 3, "accumulation_steps": 2})
    assert response.status_code == 422 and "accumulation_steps 2" in response.text

    # A version that is no starting point for this project: none, another project's, not ready.
    other_project = create_project(db, make_user("manager"), "Other project", "its versions are its own")
    foreign = ModelVersion(
        project_id=other_project.id,
        name="theirs",
        architecture="vit_t",
        origin=ModelOrigin.trained,
        status=ModelStatus.ready,
        metrics={},
        artifacts={"checkpoint": "models/theirs.pth"},
    )
    failed = ModelVersion(
        project_id=project.id,
        name="broken",
        architecture="vit_t",
        origin=ModelOrigin.trained,
        status=ModelStatus.failed,
        metrics={},
        artifacts={},
    )
    db.add_all([foreign, failed])
    db.commit()
    for version_id, words in ((999_999, "no such model version"), (foreign.id, "no such model version")):
        response = client.post(url, headers=ml, json={**TINY, "from_model_version_id": version_id})
        assert response.status_code == 422 and words in response.json()["detail"], response.text
    response = client.post(url, headers=ml, json={**TINY, "from_model_version_id": failed.id})
    assert response.status_code == 422 and "ready" in response.json()["detail"], response.text
    assert db.scalars(select(Job).where(Job.project_id == project.id, Job.kind == "train")).all() == []
