"""What a retraining round makes of the weights it trained: their held-out evaluation against the
versions they would replace, the model version that records them, and its auto-promotion.

Separate from the round's task (`tasks`), which drives a job (deliveries, progress, cancellation,
training across the model-service boundary): this module alone decides what a trained version's
record says (which metrics, the lineage, the artifacts, an encoder round's held-out embedding rows)
and reads those metrics back to promote, so the names ``held_out``, ``parent_held_out`` and
``active_held_out`` are written and compared in one place.

* The new weights, the parent and (if another) the active version are each evaluated with the
  embeddings of their own image encoder: after an encoder round the held-out images are first
  embedded with the NEW encoder, and those embeddings become rows of the new version when it is
  registered (objects no row records are deleted if the round fails before that).
* The version records: origin trained, parent, the parent's architecture; a decoder-only round keeps
  the parent's image encoder, so the same ``encoder_sha256`` and embeddings, recorded as
  ``artifacts["encoder_from"]``; an encoder round records the new encoder's digest, ``metrics
  ["held_out_encoder_sha256"]`` and its held-out embedding rows; artifacts checkpoint + browser
  decoder, hyper-parameters, metrics, data snapshot, and ``metrics["architecture_change"]`` when the
  parent's architecture is not the active version's.
* It is added in the same commit that records its id in the job's result, so a redelivered task
  does not register it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.clients.model_server import EmbeddingInfo, MaskSample, ModelRef, ModelService, TrainOutcome
from backend.embeddings import service as embeddings
from backend.jobs import service as jobs
from backend.jobs.runner import JobContext
from backend.model_versions import promotion
from backend.model_versions.service import _store_decoder, model_ref, record_info
from backend.retraining import dataset, service
from backend.retraining.schemas import RetrainParams
from backend.tables import Embedding, ModelVersion, Project
from backend.tables.enums import ModelOrigin, ModelStatus
from model_server.api import Storage


def checkpoint_key(prefix: str) -> str:
    """Where the model side writes a round's trained weights, among its artifacts under `prefix`."""
    return f"{prefix}/checkpoint.pth"


@dataclass(frozen=True)
class Round:
    """A round's fixed inputs, which each of its steps needs: the job (`ctx`), its project, the version
    it starts from (`parent`), the version serving when it started (`active`: what it would replace,
    often the parent), its parameters, and the storage and model service it runs on."""

    ctx: JobContext
    project: Project
    parent: ModelVersion
    active: ModelVersion
    params: RetrainParams
    storage: Storage
    client: ModelService


def evaluate_and_register(
    r: Round,
    *,
    prefix: str,
    outcome: TrainOutcome,
    seconds: float,
    snapshot: dataset.Snapshot,
    held_out: list[MaskSample],
    active_held_out: list[MaskSample] | None,
    train_config: dict[str, Any],
    span: tuple[float, float],
) -> ModelVersion:
    """Evaluate the weights `outcome` names (progress over the job's `span`) and register their version.

    `held_out` and `active_held_out` are the held-out masks on the parent's and the active version's
    embeddings; `train_config` is the round's TrainConfig fields, recorded as hyper-parameters."""
    ctx, parent, active, params, storage, client = r.ctx, r.parent, r.active, r.params, r.storage, r.client
    db = ctx.db
    assert outcome.info is not None  # a round that stopped early raised before
    new_ref = ModelRef(parent.architecture, checkpoint_key(prefix), outcome.info.sha256)
    new_embeddings: dict[int, EmbeddingInfo] = {}  # held-out image id -> its embedding by the new encoder
    try:
        new_held_out = held_out
        if params.trains_encoder:
            jobs.set_progress(
                db, ctx.job_id, span[0], f"embedding {len(snapshot.held_out)} held-out images with the new encoder"
            )
            new_embeddings, new_held_out = dataset.embed_held_out(db, client, new_ref, snapshot.held_out)

        evaluations = [("held_out", new_ref, new_held_out, "the new version")]
        evaluations.append(("parent_held_out", model_ref(parent), held_out, f"version {parent.id}"))
        if active_held_out is not None:
            evaluations.append(("active_held_out", model_ref(active), active_held_out, f"active version {active.id}"))
        metrics: dict[str, Any] = {}
        share = (span[1] - span[0]) / len(evaluations)
        for k, (name, model, samples, label) in enumerate(evaluations):
            start = span[0] + k * share
            metrics[name] = client.evaluate(
                model, samples, max_clicks=params.max_clicks, progress=_eval_progress(ctx, start, start + share, label)
            )
        jobs.set_progress(db, ctx.job_id, span[1], "storing the checkpoint and browser decoder")
        return _register(
            r,
            prefix,
            outcome,
            snapshot.record,
            metrics,
            seconds,
            new_embeddings,
            train_config,
        )
    except BaseException:
        _drop_unrecorded(db, storage, [found.key for found in new_embeddings.values()])
        raise


def _eval_progress(ctx: JobContext, start: float, end: float, label: str):
    def report(done: int, total: int) -> None:
        jobs.set_progress(
            ctx.db,
            ctx.job_id,
            start + (end - start) * done / max(total, 1),
            f"evaluating {label} on {total} held-out masks: {done}/{total}",
        )

    return report


def _drop_unrecorded(db: Session, storage: Storage, keys: list[str]) -> None:
    """Delete the embedding objects a failed encoder round wrote that no row records (an encoder that
    came out unchanged shares its objects with the versions that have it)."""
    if not keys:
        return
    db.rollback()
    recorded = set(db.scalars(select(Embedding.storage_key).where(Embedding.storage_key.in_(keys))))
    db.rollback()
    for key in set(keys) - recorded:
        storage.delete(key)


def _register(
    r: Round,
    prefix: str,
    outcome: TrainOutcome,
    record: dict[str, Any],
    held_out_metrics: dict[str, Any],
    seconds: float,
    new_embeddings: dict[int, EmbeddingInfo],
    train_config: dict[str, Any],
) -> ModelVersion:
    """Export the browser decoder next to the checkpoint the model side wrote under `prefix`, then add
    the version (with an encoder round's held-out embedding rows) and record its id on the job in one
    commit."""
    ctx, project, parent, active, params = r.ctx, r.project, r.parent, r.active, r.params
    db = ctx.db
    assert outcome.info is not None
    rounds = len(
        db.scalars(
            select(ModelVersion.id).where(
                ModelVersion.project_id == project.id, ModelVersion.origin == ModelOrigin.trained
            )
        ).all()
    )
    metrics: dict[str, Any] = {
        **held_out_metrics,
        "parent_id": parent.id,
        "final_loss": outcome.losses[-1] if outcome.losses else None,
        "training_seconds": round(seconds, 3),
    }
    if active.id != parent.id:
        metrics["active_id"] = active.id
    name = f"round {rounds + 1} (from #{parent.id})"
    if active.architecture != parent.architecture:
        metrics["architecture_change"] = {"from": active.architecture, "from_id": active.id, "to": parent.architecture}
        name = f"round {rounds + 1} (from #{parent.id}, {active.architecture} → {parent.architecture})"
    artifacts: dict[str, Any] = {"checkpoint": checkpoint_key(prefix)}
    if params.trains_encoder:
        metrics["held_out_encoder_sha256"] = outcome.info.encoder_sha256
    else:  # the parent's image encoder, untouched
        artifacts["encoder_from"] = promotion.encoder_identity(parent)
    hyperparameters: dict[str, Any] = {
        **train_config,
        "held_out_fraction": params.held_out_fraction,
        "min_masks": params.min_masks,
        "max_clicks": params.max_clicks,
        "steps_done": outcome.steps_done,
        "job_id": ctx.job_id,
    }
    version = ModelVersion(
        project_id=project.id,
        parent_id=parent.id,
        name=name,
        architecture=parent.architecture,
        origin=ModelOrigin.trained,
        status=ModelStatus.ready,
        artifacts=artifacts,
        metrics=metrics,
        data_snapshot=record,
        hyperparameters=hyperparameters,
    )
    record_info(version, outcome.info)
    _store_decoder(version, r.storage, r.client, prefix)
    db.add(version)
    db.flush()
    db.add_all(embeddings.embedding_row(version.id, image_id, found) for image_id, found in new_embeddings.items())
    job = ctx.job()
    job.result = {**(job.result or {}), "new_model_version_id": version.id}
    db.commit()
    return version


def maybe_promote(r: Round, version: ModelVersion) -> dict[str, Any]:
    """Promote `version` if the round asks for it and it beats `r.active`, the version it would replace
    (the one serving when the round started), on the same held-out images."""
    ctx, project, active, params = r.ctx, r.project, r.active, r.params
    db = ctx.db
    db.refresh(project)
    if not service.round_auto_promote(project, params):
        return {"promoted": False, "promotion": "auto-promotion is off: promote by hand"}
    if project.active_model_version_id != active.id:
        return {
            "promoted": False,
            "promotion": f"not promoted: the active version is no longer {active.id}, the one the round was to replace",
        }
    new = version.metrics["held_out"]
    old = version.metrics.get("active_held_out", version.metrics["parent_held_out"])
    if not service.is_better(new, old):
        return {
            "promoted": False,
            "promotion": (
                f"not promoted: not better on held-out (NoC@90 {new['noc90']:.2f} vs {old['noc90']:.2f}, "
                f"1-point mIoU {new['miou_1pt']:.3f} vs {old['miou_1pt']:.3f})"
            ),
        }
    promotion.promote(db, project, version, None, ctx.settings)
    return {
        "promoted": True,
        "promotion": (
            f"promoted: better on held-out (NoC@90 {new['noc90']:.2f} vs {old['noc90']:.2f}, "
            f"1-point mIoU {new['miou_1pt']:.3f} vs {old['miou_1pt']:.3f})"
        ),
    }
