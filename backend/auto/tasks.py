"""Celery task `auto.annotate` (queue ``auto``): the automatic generator over a project's images.

Runs through `backend.jobs.runner.run_job` (claim, heartbeat, progress, honest end state). The job's
``params`` are its inputs: ``model_version_id`` and ``params`` (`AutoParams`).
Each image is stored by `service.store_image_masks` in one transaction with its "done" mark, so the
task is idempotent and resumable: a redelivered message, a requeued job (the sweep) or a new job all
continue with the images not done yet. An image that fails (its file unreadable, the generator
refusing it) is recorded in the result's ``failed_images`` (`backend.jobs.failures`) and left not done,
and the job goes on with the others; an image where the generator finds nothing is done with 0 masks.
The generator runs on the model side over the stored image (`ModelService.automatic_masks`); a model
service that is down or failing (`ModelServiceError`) fails the job at once with its message.
"""

from __future__ import annotations

from typing import Any

from backend.auto import service
from backend.auto.schemas import AutoParams
from backend.clients.model_server import ModelServiceError, model_service
from backend.jobs.failures import FailedImages
from backend.jobs.runner import JobContext, run_job
from backend.model_versions.service import model_ref
from backend.storage import storage_for
from backend.tables import Image, ModelVersion
from backend.worker.celery_app import app


@app.task(name="auto.annotate", acks_late=True, reject_on_worker_lost=True)
def auto_annotate(job_id: int) -> str:
    return run_job(job_id, annotate_project)


def annotate_project(ctx: JobContext) -> dict[str, Any]:
    """The work of one auto job (see the module docstring); returns the job's result."""
    db, settings = ctx.db, ctx.settings
    inputs = ctx.job().params
    params = AutoParams.model_validate(inputs.get("params", {}))
    version = db.get(ModelVersion, int(inputs["model_version_id"]))
    if version is None:
        raise ValueError("the job's model version no longer exists")
    project = ctx.project()
    sampling = service.ReviewSampling.of(project)
    client = model_service(settings, storage_for(settings))
    ref = model_ref(version)

    total, todo = service.images_to_do(db, project.id)
    done = total - len(todo)
    ctx.progress(done, total, f"{done}/{total} images")
    masks = dropped = pending = duplicates = processed = 0
    failed = FailedImages()
    for image_id in todo:
        image = db.get(Image, image_id)
        if image is None:  # deleted while the job ran
            total -= 1
            continue
        try:
            records = client.automatic_masks(ref, image.storage_key, params.generator_kwargs())
            stored = service.store_image_masks(
                db,
                image,
                records,
                sampling,
                params.max_mask_fraction,
                {"model_version_id": version.id, "job_id": ctx.job_id},
            )
        except ModelServiceError:
            raise
        except Exception as error:
            db.rollback()
            failed.add(image_id, error)
        else:
            masks, dropped, pending, duplicates = (
                masks + stored.masks,
                dropped + stored.dropped_large,
                pending + stored.pending_review,
                duplicates + stored.duplicates,
            )
            processed += 1
        done += 1
        ctx.progress(done, total, f"{done}/{total} images, {masks} masks{failed.suffix()}")
    failed.raise_if_all_failed(processed)
    return {
        "model_version_id": version.id,
        "params": params.model_dump(),
        "total": total,
        "processed": processed,
        "already_done": total - len(todo),
        "masks": masks,
        "dropped_large": dropped,
        "pending_review": pending,
        "skipped_duplicates": duplicates,
        **failed.result(),
    }
