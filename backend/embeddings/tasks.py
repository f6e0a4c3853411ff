"""Celery task `embed.embed_images`: the missing embeddings of a project, with progress.

Idempotent: it embeds only images without an embedding of the job's model version, so running it
twice (a redelivered message, a requeued job) finishes the work without duplicates. Images whose
file cannot be read are listed in the result instead of failing the whole job.
"""

from __future__ import annotations

from typing import Any

from backend.clients.model_server import ModelServerClient
from backend.embeddings import service
from backend.jobs.runner import JobContext, run_job
from backend.jobs.service import STALE_AFTER
from backend.model_versions.service import model_spec
from backend.models import Image, Job, ModelVersion
from backend.storage import LocalStorage
from backend.worker.celery_app import app

BATCH_IN_PROCESS = 2  # images per encoder call on the CPU (progress stays fine-grained)
BATCH_HTTP = 16  # images in flight to a model server (it batches them on its GPU)


@app.task(name="embed.embed_images", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def embed_images(self, job_id: int) -> str:
    """Embed the job's project; a delivery that finds the job held by a live runner comes back later
    (if that runner died, e.g. its worker child was killed, this delivery then takes the job over)."""
    outcome = run_job(job_id, _embed_project)
    if outcome == "busy":
        raise self.retry(countdown=STALE_AFTER.total_seconds())
    return outcome


def _embed_project(ctx: JobContext) -> dict[str, Any]:
    db, settings = ctx.db, ctx.settings
    job = db.get(Job, ctx.job_id)
    version = db.get(ModelVersion, int((job.result or {})["model_version_id"]))
    if version is None:
        raise ValueError("the job's model version no longer exists")
    storage = LocalStorage(settings.storage_path)
    client = ModelServerClient.from_settings(settings)
    spec = model_spec(version, storage)
    total = db.query(Image).filter(Image.project_id == job.project_id).count()
    todo = service.missing_image_ids(db, job.project_id, version.id)
    done = total - len(todo)
    ctx.progress(done, total, f"{done}/{total} images embedded")
    batch_size = BATCH_IN_PROCESS if client.embedded else BATCH_HTTP
    embedded, unreadable = 0, []
    for start in range(0, len(todo), batch_size):
        images = [db.get(Image, i) for i in todo[start : start + batch_size]]
        readable, arrays = [], []
        for image in images:
            try:
                arrays.append(service.load_image_rgb(storage, image))
                readable.append(image)
            except ValueError:
                unreadable.append(image.id)
        if readable:
            service.compute_embeddings(db, storage, client, version, spec, readable, arrays)
        embedded += len(readable)
        done += len(images)
        ctx.progress(done, total, f"{done}/{total} images embedded")
    if unreadable and not embedded and todo:
        raise ValueError(f"no image could be read ({len(unreadable)} unreadable files)")
    return {"model_version_id": version.id, "total": total, "embedded": embedded,
            "already_done": total - len(todo), "unreadable_image_ids": unreadable}
