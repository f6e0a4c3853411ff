"""Celery task `embeddings.embed_images` (queue ``embed``): the missing embeddings of a project, with progress.

The job's ``params`` name the model version (``model_version_id``).

Idempotent: it embeds only images without an embedding of the job's model version, so running it
twice (a redelivered message, a requeued job) finishes the work without duplicates. An image that
cannot be embedded (its file unreadable, a shape the model refuses) is recorded in the result's
``failed_images`` (`backend.jobs.failures`) and the others are embedded all the same. A model service
that is down or failing (`ModelServiceError`) fails the job at once with its message: every image
would fail the same way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from backend.clients.model_server import ModelService, ModelServiceError, model_service
from backend.embeddings import service
from backend.jobs.failures import FailedImages
from backend.jobs.runner import JobContext, run_job
from backend.jobs.service import STALE_AFTER
from backend.storage import storage_for
from backend.tables import Image, ModelVersion
from backend.worker.celery_app import app
from model_server.api import Storage

BATCH_IN_PROCESS = 2  # images per encoder call on the CPU (progress stays fine-grained)
BATCH_HTTP = 16  # images in flight to a model server (it batches them on its GPU)


@app.task(name="embeddings.embed_images", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def embed_images(self, job_id: int) -> str:
    """Embed the job's project; a delivery that finds the job held by a live runner comes back later
    (if that runner died, e.g. its worker child was killed, this delivery then takes the job over)."""
    outcome = run_job(job_id, _embed_project)
    if outcome == "busy":
        raise self.retry(countdown=STALE_AFTER.total_seconds())
    return outcome


def _embed_project(ctx: JobContext) -> dict[str, Any]:
    db, settings = ctx.db, ctx.settings
    project_id = ctx.project().id
    version = db.get(ModelVersion, int(ctx.job().params["model_version_id"]))
    if version is None:
        raise ValueError("the job's model version no longer exists")
    storage = storage_for(settings)
    client = model_service(settings, storage)
    total = db.query(Image).filter(Image.project_id == project_id).count()
    todo = service.missing_image_ids(db, project_id, version.id)
    done = total - len(todo)
    ctx.progress(done, total, f"{done}/{total} images embedded")
    batch_size = BATCH_IN_PROCESS if settings.model_server_url is None else BATCH_HTTP
    embedded, failed = 0, FailedImages()
    for start in range(0, len(todo), batch_size):
        ids = todo[start : start + batch_size]
        embedded += _embed_batch(db, storage, client, version, ids, failed)
        done += len(ids)
        ctx.progress(done, total, f"{done}/{total} images embedded{failed.suffix()}")
    failed.raise_if_all_failed(embedded)
    return {
        "model_version_id": version.id,
        "total": total,
        "embedded": embedded,
        "already_done": total - len(todo),
        **failed.result(),
    }


def _embed_batch(
    db: Session,
    storage: Storage,
    client: ModelService,
    version: ModelVersion,
    ids: list[int],
    failed: FailedImages,
) -> int:
    """Embed the images `ids` in one call; if that fails, one by one, so that only the images that fail
    on their own are recorded in `failed`. Returns how many were embedded."""
    images = [image for image in (db.get(Image, image_id) for image_id in ids) if image is not None]
    if not images:  # deleted meanwhile
        return 0
    try:
        service.compute_embeddings(db, storage, client, version, images)
        return len(images)
    except ModelServiceError:
        raise
    except Exception as error:
        db.rollback()
        if len(images) == 1:
            failed.add(images[0].id, error)
            return 0
    return sum(_embed_batch(db, storage, client, version, [image.id], failed) for image in images)
