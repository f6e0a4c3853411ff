"""Celery tasks of retraining: `retraining.retrain` (queue ``train``) and the beat check that starts rounds
(`retraining.start_due_rounds`, queue ``embed``).

`retraining.retrain(job_id)` runs one round through `backend.jobs.runner.run_job` (claim, heartbeat,
honest end state). The job's ``params`` are its inputs: ``model_version_id`` (the parent: the version
the round starts from, the project's active one unless ``from_model_version_id`` chose another),
``active_model_version_id`` (the version serving the project when the round was started; rounds
queued before it was recorded started from it), ``params`` (`RetrainParams`), ``mask_watermark`` and
``reason``. The round:

1. snapshots the accepted masks and splits them by image (`dataset.take_snapshot`); too few → the
   job fails with a message saying how many there are and how many are needed;
2. a decoder-only round (``encoder_mode`` frozen) names the parent's embeddings of those images
   (computing missing ones through the model service); a round that trains the image encoder sends
   the images themselves (`ImageMaskSample`: storage key + RLE) and embeds no training image. Either
   way the held-out images' embeddings by the parent (and by the active version, when it is another)
   are named for their evaluation;
3. the model side trains from the parent's weights (the prompt encoder + mask decoder, and the image
   encoder as ``encoder_mode`` says; on a CPU that is refused unless
   `Settings.allow_cpu_encoder_training`) with progress 5%→85%, reported back across the
   model-service boundary: the job's ``result`` shows ``step``, ``total_steps``, ``loss``,
   ``eta_seconds`` and a ``loss_curve`` of [step, loss] points (thinned to at most
   `MAX_CURVE_POINTS`), written at most every `REPORT_SECONDS`; a cancelled job stops training at the
   next step (``should_stop``);
4. hands the trained weights to `registration`, which evaluates them, the parent and (if another)
   the active version on the held-out masks, each with the embeddings of its own image encoder
   (85%→97%), and registers the version in the same commit that records its id in the job's result,
   so a redelivered task does not register it twice;
5. auto-promotes it if the round says so and it beats the version that was active when the round
   started (`service.is_better`), provided that version still serves (`registration.maybe_promote`).

Training state is checkpointed under ``training/job-<id>/`` in storage (the retrain call's
``work_prefix``), so a requeued job (worker or model service lost, see the jobs sweep) resumes where the
checkpoint left off, on any model service; it is removed when the round ends.
"""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import select

from backend.clients.model_server import MaskSample, TrainOutcome, model_service
from backend.jobs import service as jobs
from backend.jobs.runner import JobContext, run_job, worker_sessions
from backend.jobs.service import STALE_AFTER, JobCancelled
from backend.model_versions.service import model_ref
from backend.retraining import dataset, registration, service
from backend.retraining.schemas import RetrainParams
from backend.storage import storage_for
from backend.tables import Job, ModelVersion
from backend.tables.enums import JobStatus
from backend.worker.celery_app import app, task_settings
from model_server.api import ImageMaskSample

REPORT_SECONDS = 1.0
MAX_CURVE_POINTS = 500
TRAIN_START, TRAIN_END, EVAL_END = 0.05, 0.85, 0.97


@app.task(name="retraining.retrain", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def retrain(self, job_id: int) -> str:
    """Run one retraining round (see the module docstring)."""
    outcome = run_job(job_id, run_round)
    if outcome == "busy":
        raise self.retry(countdown=STALE_AFTER.total_seconds())
    return outcome


# Small and quick, so it rides the embed queue (celery_app.TASK_QUEUES), never behind a long training.
@app.task(name="retraining.start_due_rounds")
def start_due_retrain_rounds() -> list[tuple[int, int]]:
    """Start a round in each project that collected `retrain_every_masks` new masks (beat)."""
    settings = task_settings()
    with worker_sessions(settings)() as db:
        return service.start_due_rounds(db, settings, storage_for(settings))


class _Reporter:
    """Live training progress on the job row, and the cancel flag read back from it.

    Writes at most every `REPORT_SECONDS` (and at the last step) so a fast step loop does not
    hammer the database; reading the cancel flag is rate-limited the same way. A requeued job's
    delivery continues the `curve` of the earlier one from the step its checkpoint resumes at.
    A non-finite loss (a diverging round) is written as null: JSON (PostgreSQL's) has no NaN.
    """

    def __init__(self, ctx: JobContext, total_steps: int, curve: list[list[Any]]) -> None:
        self.ctx, self.total = ctx, total_steps
        self.curve: list[list[Any]] = [list(point) for point in curve]
        self.stride = 1
        self.first_step: int | None = None
        self.started = time.monotonic()
        self.last_write = 0.0
        self.cancelled = False
        self.last_check = 0.0
        self.step, self.loss = 0, float("nan")
        self.eta: float | None = None

    def __call__(self, step: int, total: int, loss: float) -> None:
        now = time.monotonic()
        if self.first_step is None:  # a resumed run starts past step 1
            self.first_step = step - 1
            self.curve = [point for point in self.curve if point[0] < step]
        self.step, self.loss = step, float(loss)
        if step % self.stride == 0:
            self.curve.append([step, _finite(round(self.loss, 6))])
            if len(self.curve) > MAX_CURVE_POINTS:
                self.curve, self.stride = self.curve[::2], self.stride * 2
        done_here = step - self.first_step
        self.eta = (now - self.started) / done_here * (total - step) if done_here > 0 else None
        if now - self.last_write >= REPORT_SECONDS or step == total:
            self.last_write = now
            self.write(now)

    def finish(self, outcome: TrainOutcome) -> None:
        """The last write of training. A delivery that resumed after the last step trained none: it
        reports the steps done and the earlier delivery's last loss."""
        if self.first_step is None:
            self.step = outcome.steps_done
            losses = [point[1] for point in self.curve if point[1] is not None] or outcome.losses
            self.loss = float(losses[-1]) if losses else float("nan")
        self.write(time.monotonic())

    def write(self, now: float) -> None:
        eta = f", about {self.eta:.0f} s left" if self.eta is not None else ""
        message = f"training: step {self.step}/{self.total}, loss {self.loss:.4f}{eta}"
        fraction = TRAIN_START + (TRAIN_END - TRAIN_START) * self.step / self.total
        self.cancelled = not _report(
            self.ctx,
            fraction,
            message,
            step=self.step,
            total_steps=self.total,
            loss=_finite(self.loss),
            eta_seconds=self.eta,
            loss_curve=self.curve,
        )
        self.last_check = now

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self.last_check >= REPORT_SECONDS:
            self.last_check = now
            db = self.ctx.db
            self.cancelled = db.scalar(select(Job.status).where(Job.id == self.ctx.job_id)) == JobStatus.cancelled
            db.commit()  # end the read transaction (PostgreSQL would otherwise keep its snapshot)
        return self.cancelled


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _report(ctx: JobContext, fraction: float, message: str, **result: Any) -> bool:
    """Progress plus fields merged into the job's result; False (nothing written) if it was cancelled."""
    db = ctx.db
    job = ctx.job()
    if job.status == JobStatus.cancelled:
        return False
    job.result = {**(job.result or {}), **result}
    job.progress, job.message, job.heartbeat_at = min(max(fraction, 0.0), 1.0), message, jobs.now()
    db.commit()
    return True


def _train_config(params: RetrainParams) -> dict[str, Any]:
    """The library's TrainConfig fields of a round: warm-up and checkpoints scale with short rounds;
    the learning rate drops tenfold for the last quarter (the paper's step decay, and what made
    benchmarks/engine_loop.py improve every round). The encoder's own knobs only where its mode uses them."""
    config: dict[str, Any] = {
        "steps": params.steps,
        "lr": params.lr,
        "batch_size": params.batch_size,
        "seed": params.seed,
        "warmup_steps": min(250, params.steps // 10),
        "lr_decay_steps": [params.steps * 3 // 4],
        "checkpoint_every": max(1, min(100, params.steps // 5)),
        "max_mask_fraction": dataset.MAX_MASK_FRACTION,
        "encoder_mode": params.encoder_mode,
        "accumulation_steps": params.accumulation_steps,
    }
    if params.encoder_mode == "last_k":
        config["encoder_last_k"] = params.encoder_last_k
    if params.encoder_mode == "lora":
        config["lora_rank"] = params.lora_rank
    return config


def run_round(ctx: JobContext) -> dict[str, Any]:
    """The work of one `train` job; returns the job's result."""
    db, settings = ctx.db, ctx.settings
    job = ctx.job()
    inputs = job.params
    params = RetrainParams.model_validate(inputs.get("params", {}))
    parent = db.get(ModelVersion, int(inputs["model_version_id"]))
    if parent is None:
        raise ValueError("the round's parent model version no longer exists")
    active = db.get(ModelVersion, int(inputs.get("active_model_version_id", parent.id)))
    if active is None:
        raise ValueError("the model version that was active when the round started no longer exists")
    project = ctx.project()
    storage = storage_for(settings)
    client = model_service(settings, storage)
    work_prefix = f"training/job-{job.id}/"
    this_round = registration.Round(ctx, project, parent, active, params, storage, client)

    registered = (job.result or {}).get("new_model_version_id")  # by an earlier delivery of this job
    version = db.get(ModelVersion, registered) if registered is not None else None
    if version is None:
        version = _train_and_register(this_round, work_prefix)
    kept = ("model_version_id", "active_model_version_id", "params", "mask_watermark", "reason")
    result: dict[str, Any] = {
        **{key: inputs[key] for key in kept if key in inputs},
        **{k: v for k, v in (ctx.job().result or {}).items() if k in ("step", "total_steps", "loss", "loss_curve")},
        "new_model_version_id": version.id,
        "metrics": version.metrics,
        "data_snapshot": version.data_snapshot,
        "eta_seconds": 0,
    }
    result.update(registration.maybe_promote(this_round, version))
    storage.delete_prefix(work_prefix)
    return result


def _train_and_register(r: registration.Round, work_prefix: str) -> ModelVersion:
    ctx, project, parent, active, params = r.ctx, r.project, r.parent, r.active, r.params
    storage, client = r.storage, r.client
    db = ctx.db
    snapshot = dataset.take_snapshot(db, project.id, params.held_out_fraction, params.seed)
    record = snapshot.record
    if record["masks"] < params.min_masks:
        raise ValueError(
            f"not enough masks to retrain: {record['masks']} usable accepted mask(s) in the project "
            f"({record['dropped_large_or_empty']} more cover over {dataset.MAX_MASK_FRACTION:.0%} of their "
            f"image or are empty), a round needs at least {params.min_masks}"
        )
    if not snapshot.train or not snapshot.held_out:
        raise ValueError(
            f"masks on at least two images are needed (one to train on, one held out); "
            f"the project's {record['masks']} masks are on {record['images']} image(s)"
        )
    ref = model_ref(parent)
    embedded = record["held_out_images"] if params.trains_encoder else record["images"]
    if not _report(ctx, 0.0, f"loading embeddings of {embedded} images", data_snapshot=record):
        raise JobCancelled(f"job {ctx.job_id} was cancelled")
    train: list[MaskSample] | list[ImageMaskSample]
    if params.trains_encoder:  # trained on the images: the parent's embeddings of them are of no use
        train = dataset.image_samples(db, snapshot.train)
    else:
        train = dataset.load_samples(db, storage, client, parent, snapshot.train)
    held_out = dataset.load_samples(db, storage, client, parent, snapshot.held_out)
    active_held_out = (
        dataset.load_samples(db, storage, client, active, snapshot.held_out) if active.id != parent.id else None
    )

    earlier = (ctx.job().result or {}).get("loss_curve") or []  # this job's previous delivery, if requeued
    reporter = _Reporter(ctx, params.steps, earlier)
    if not _report(
        ctx, TRAIN_START, f"training on {len(train)} masks", step=0, total_steps=params.steps, loss_curve=earlier
    ):
        raise JobCancelled(f"job {ctx.job_id} was cancelled")
    prefix = f"models/projects/{project.id}/job-{ctx.job_id}"
    recorded = _train_config(params)  # the hyper-parameters the version records
    config = dict(recorded)
    if params.trains_encoder:
        config["allow_cpu_encoder_training"] = ctx.settings.allow_cpu_encoder_training
    try:
        started = time.monotonic()
        outcome = client.retrain(
            ref,
            train,
            config,
            registration.checkpoint_key(prefix),
            work_prefix=work_prefix,
            progress=reporter,
            should_stop=reporter.should_stop,
        )
        seconds = time.monotonic() - started
        if outcome.stopped_early or outcome.info is None:
            storage.delete_prefix(work_prefix)
            raise JobCancelled(f"job {ctx.job_id} was cancelled at step {outcome.steps_done}")
        reporter.finish(outcome)
        return registration.evaluate_and_register(
            r,
            prefix=prefix,
            outcome=outcome,
            seconds=seconds,
            snapshot=snapshot,
            held_out=held_out,
            active_held_out=active_held_out,
            train_config=recorded,
            span=(TRAIN_END, EVAL_END),
        )
    except BaseException:
        storage.delete_prefix(prefix + "/")  # a round that did not register keeps no artifacts
        raise
