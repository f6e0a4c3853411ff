"""Celery task `selection.score_images` (queue ``embed``): the selection scores of a project's images.

The job's ``params`` name the model version (``model_version_id``: the one serving the project when
the job was started). Celery beat starts it (`start_due_scoring`, every `backend.worker.celery_app.SCORE_CHECK_SECONDS`) for each
project with embeddings of its serving version that have no scores of that version: so within a
minute after an embedding job, and after a promotion (whose new version has new embeddings, or the
old ones reused), with no hook in either. A manager may start it too
(``POST /api/projects/{id}/selection/score``, e.g. after changing ``selection.seed``).

It asks the model service (`model_server.api.ModelService.score_images`, through
`backend.clients.model_server`) for the scores of every embedded image whose scores are missing or
come from another version, in batches, stores them (flagging near duplicates among the new ones), then
recomputes the strategies' ranks over the whole project (`service.rank_project`). Idempotent: a second
run scores nothing new and ranks again. An image whose embedding went missing meanwhile is recorded
in ``failed_images`` and the others are scored all the same.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.clients.model_server import ModelRef, ModelService, model_service
from backend.core.config import Settings
from backend.embeddings.service import info
from backend.jobs import service as jobs
from backend.jobs.failures import FailedImages
from backend.jobs.runner import JobContext, run_job, worker_sessions
from backend.model_versions.service import model_ref
from backend.selection import service
from backend.storage import storage_for
from backend.tables import Embedding, Image, Job, ModelVersion
from backend.tables.selection import ImageScore
from backend.worker.celery_app import app, task_settings
from model_server.api import ImageScores

BATCH = 16  # embeddings per model-service call (progress and a failure's blast radius stay small)


@app.task(name="selection.score_images", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def score_images(self, job_id: int) -> str:
    """Score the job's project; a delivery that finds the job held by a live runner comes back later."""
    outcome = run_job(job_id, _score_project)
    if outcome == "busy":
        raise self.retry(countdown=jobs.STALE_AFTER.total_seconds())
    return outcome


@app.task(name="selection.start_due_scoring")
def start_due_scoring() -> list[int]:
    """Start the score job of every project due one (`service.due_for_scoring`); the jobs' ids."""
    settings = task_settings()
    with worker_sessions(settings)() as db:
        return [
            start_scoring(db, settings, project_id, version_id, None).id
            for project_id, version_id in service.due_for_scoring(db)
        ]


def start_scoring(db: Session, settings: Settings, project_id: int, version_id: int, user_id: int | None) -> Job:
    """Start (or return the pending) score job of the project for model version `version_id`."""
    return jobs.start_or_existing(
        db,
        settings,
        "score",
        project_id,
        user_id,
        lambda: jobs.JobInputs({"model_version_id": version_id}, f"scoring images with model version {version_id}"),
        reuse=lambda pending: pending.params.get("model_version_id") == version_id,
    ).job


def _score_one(client: ModelService, ref: ModelRef, row: Embedding, failed: FailedImages) -> ImageScores | None:
    try:
        return client.score_images(ref, [info(row)])[0]
    except (KeyError, ValueError) as error:
        failed.add(row.image_id, error)
        return None


def _score_project(ctx: JobContext) -> dict[str, Any]:
    db, settings = ctx.db, ctx.settings
    project = ctx.project()
    version = db.get(ModelVersion, int(ctx.job().params["model_version_id"]))
    if version is None:
        raise ValueError("the job's model version no longer exists")
    todo = (
        db.execute(
            select(Embedding)
            .join(Image, Image.id == Embedding.image_id)
            .outerjoin(ImageScore, ImageScore.image_id == Embedding.image_id)
            .where(
                Image.project_id == project.id,
                Embedding.model_version_id == version.id,
                or_(ImageScore.image_id.is_(None), ImageScore.model_version_id != version.id),
            )
            .order_by(Embedding.image_id)
        )
        .scalars()
        .all()
    )
    client = model_service(settings, storage_for(settings))
    ref = model_ref(version)
    total, scored, flagged, failed = len(todo), 0, 0, FailedImages()
    ctx.progress(0, total, f"0/{total} images scored")
    for start in range(0, total, BATCH):
        batch = todo[start : start + BATCH]
        try:
            results: list[ImageScores | None] = list(client.score_images(ref, [info(row) for row in batch]))
        except (KeyError, ValueError):  # one embedding object gone or refused: score the others one by one
            results = [_score_one(client, ref, row, failed) for row in batch]
        pairs = {row.image_id: result for row, result in zip(batch, results) if result is not None}
        flagged += service.store_scores(db, project, version.id, pairs)
        db.commit()
        scored += len(pairs)
        ctx.progress(start + len(batch), total, f"{start + len(batch)}/{total} images scored{failed.suffix()}")
    ranked = service.rank_project(db, project)
    db.commit()
    failed.raise_if_all_failed(scored)
    return {
        "model_version_id": version.id,
        "scored": scored,
        "near_duplicates": flagged,
        "ranked": ranked,
        **failed.result(),
    }
