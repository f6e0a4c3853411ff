"""Celery tasks of the semi-automatic stage.

* ``detection.train`` (queue ``train``, job kind ``detect_train``): trains a new detector
  version of the project on the boxes of its accepted masks (`service.training_boxes`), over the
  cached SAM embeddings of the version's model (computed here when missing), split by image; the
  held-out images give the version's recall/precision at IoU 0.5 and AP50. The version row is
  created with the job (status ``training``) and ends ``ready`` with its weights and metrics, or
  ``failed`` with the reason (also the job's error). Too few masks fail the job with the counts.
* ``detection.propose`` (queue ``auto``, job kind ``detect``): pre-fills every image of the project
  that is neither proposed nor done in the semi-automatic stage with the detector's masks (detector
  boxes → SAM box prompts), one atomic transaction per image (`service.store_proposals`), so it is
  idempotent and resumable. Images an annotator holds a live lock on are skipped (listed in the
  result; the next run proposes them); an image that fails is recorded in ``failed_images``
  (`backend.jobs.failures`) and the job goes on with the others.

Training and proposals run on the model side (`ModelService.train_detector` / `propose_masks`) over
the stored embeddings, named by their keys; the detector's weights are written by it to
``detectors/<project>/<version>/detector.pt``. A model service that is down or failing
(`ModelServiceError`) fails either job at once with its message.

Both run through `backend.jobs.runner.run_job` (claim, heartbeat, progress, cancel, honest end); the
job's ``params`` name the detector version (``detector_version_id``) and hold the request's ``params``.
"""

from __future__ import annotations

from typing import Any

from backend.clients.model_server import DetectorSample, ModelService, ModelServiceError, model_service
from backend.clients.model_server import ProposeParams as Thresholds
from backend.detection import service
from backend.detection.schemas import DetectorTrainParams, ProposeParams
from backend.embeddings import service as embeddings
from backend.jobs.failures import FailedImages
from backend.jobs.runner import JobContext, run_job
from backend.masks.split import split_images
from backend.model_versions.service import model_ref
from backend.storage import storage_for
from backend.tables import DetectorVersion, Image, ModelStatus, ModelVersion
from backend.worker.celery_app import app
from model_server.api import Storage

# Progress of a training job, in thousandths: embeddings, then training, then evaluation.
_EMBED_END, _TRAIN_END = 250, 950


@app.task(name="detection.train", acks_late=True, reject_on_worker_lost=True)
def train_detector(job_id: int) -> str:
    return run_job(job_id, train_version)


@app.task(name="detection.propose", acks_late=True, reject_on_worker_lost=True)
def propose_masks(job_id: int) -> str:
    return run_job(job_id, propose_project)


def _samples(
    ctx: JobContext,
    storage: Storage,
    client: ModelService,
    version: ModelVersion,
    boxes: dict[int, list[list[float]]],
    image_ids: list[int],
    start: int,
    end: int,
) -> list[DetectorSample]:
    """One `DetectorSample` per image (its stored embedding and boxes), embedding missing ones; progress
    moves from `start` to `end` thousandths."""
    samples = []
    for n, image_id in enumerate(image_ids):
        image = ctx.db.get_one(Image, image_id)
        row = embeddings.get_or_compute(ctx.db, storage, client, version, image)
        samples.append(DetectorSample(embeddings.info(row), boxes[image_id]))
        ctx.progress(start + (end - start) * (n + 1) // len(image_ids), 1000, f"embeddings {n + 1}/{len(image_ids)}")
    return samples


def train_version(ctx: JobContext) -> dict[str, Any]:
    """The work of one detector training job; returns the job's result."""
    db = ctx.db
    inputs = ctx.job().params
    detector = db.get(DetectorVersion, int(inputs["detector_version_id"]))
    if detector is None:
        raise ValueError("the job's detector version no longer exists")
    try:
        return _train(ctx, detector, DetectorTrainParams.model_validate(inputs.get("params", {})))
    except Exception as error:
        db.rollback()
        failed = db.get(DetectorVersion, detector.id)
        if failed is not None:  # None: deleted meanwhile
            failed.status = ModelStatus.failed
            failed.metrics = {"error": str(error)}
            db.commit()
        raise


def _train(ctx: JobContext, detector: DetectorVersion, params: DetectorTrainParams) -> dict[str, Any]:
    db, settings = ctx.db, ctx.settings
    version = db.get(ModelVersion, detector.model_version_id) if detector.model_version_id else None
    if version is None:
        raise ValueError("the detector's SAM model version no longer exists")
    storage = storage_for(settings)
    client = model_service(settings, storage)
    boxes = service.training_boxes(db, detector.project_id)
    service.check_enough(boxes, params.min_boxes)
    train_ids, heldout_ids = split_images(
        list(boxes), params.held_out_fraction, params.seed, min_train=service.MIN_TRAIN_IMAGES
    )
    ctx.progress(0, 1000, f"{sum(len(b) for b in boxes.values())} masks on {len(boxes)} images")
    middle = _EMBED_END * len(train_ids) // len(boxes)
    train = _samples(ctx, storage, client, version, boxes, train_ids, 0, middle)
    heldout = _samples(ctx, storage, client, version, boxes, heldout_ids, middle, _EMBED_END)

    def progress(epoch: int, epochs: int, loss: float) -> None:
        ctx.progress(
            _EMBED_END + (_TRAIN_END - _EMBED_END) * epoch // epochs,
            1000,
            f"training epoch {epoch}/{epochs}, loss {loss:.3f}",
        )

    key = f"detectors/{detector.project_id}/{detector.id}/detector.pt"
    try:
        training = client.train_detector(model_ref(version), train, params.detector_config(), key, progress=progress)
        ctx.progress(_TRAIN_END, 1000, f"evaluating on {len(heldout_ids)} held-out images")
        heldout_metrics = client.evaluate_detector(key, heldout, score_thresh=params.score_thresh)
    except BaseException:
        storage.delete(key)  # a version that failed keeps no weights
        raise
    detector = db.get_one(DetectorVersion, detector.id)
    detector.artifacts = {"weights": key}
    detector.metrics = {**heldout_metrics, "training": training}
    detector.train_image_ids, detector.heldout_image_ids = train_ids, heldout_ids
    detector.status = ModelStatus.ready
    db.commit()
    return {
        "detector_version_id": detector.id,
        "metrics": heldout_metrics,
        "train_images": len(train_ids),
        "heldout_images": len(heldout_ids),
    }


def propose_project(ctx: JobContext) -> dict[str, Any]:
    """The work of one proposal job; returns the job's result."""
    db, settings = ctx.db, ctx.settings
    inputs = ctx.job().params
    params = ProposeParams.model_validate(inputs.get("params", {}))
    detector = db.get(DetectorVersion, int(inputs["detector_version_id"]))
    if detector is None or detector.status != ModelStatus.ready:
        raise ValueError("the job's detector version no longer exists or is not ready")
    version = db.get(ModelVersion, detector.model_version_id) if detector.model_version_id else None
    if version is None:
        raise ValueError("the detector's SAM model version no longer exists")
    storage = storage_for(settings)
    client = model_service(settings, storage)
    ref, weights = model_ref(version), detector.artifacts["weights"]
    thresholds = Thresholds(
        score_thresh=params.score_thresh,
        pred_iou_thresh=params.pred_iou_thresh,
        nms_thresh=params.nms_thresh,
        max_boxes=params.max_boxes,
    )

    total, todo = service.images_to_propose(db, detector.project_id)
    done = total - len(todo)
    ctx.progress(done, total, f"{done}/{total} images")
    masks = boxes = proposed = duplicates = succeeded = 0
    busy: list[int] = []
    failed = FailedImages()
    for image_id in todo:
        image = db.get(Image, image_id)
        if image is None:  # deleted while the job ran
            total -= 1
            continue
        if service.is_locked(image):
            busy.append(image_id)
        else:
            try:
                row = embeddings.get_or_compute(db, storage, client, version, image)
                found = client.propose_masks(ref, weights, embeddings.info(row), thresholds)
                n_boxes = found.n_boxes
                stored = service.store_proposals(db, image, detector, n_boxes, found.records)
            except ModelServiceError:
                raise
            except Exception as error:
                db.rollback()
                failed.add(image_id, error)
            else:
                succeeded += 1
                if not stored.already_proposed:
                    masks, boxes, proposed = masks + stored.masks, boxes + n_boxes, proposed + 1
                    duplicates += stored.duplicates
        done += 1
        ctx.progress(done, total, f"{done}/{total} images, {masks} pre-filled masks{failed.suffix()}")
    failed.raise_if_all_failed(succeeded + len(busy))
    return {
        "detector_version_id": detector.id,
        "params": params.model_dump(),
        "total": total,
        "proposed": proposed,
        "boxes": boxes,
        "masks": masks,
        "skipped_duplicates": duplicates,
        "skipped_locked_image_ids": busy,
        **failed.result(),
    }
