"""Promotion and rollback: which registered version serves a project, and its embeddings.

A project's active version (``projects.active_model_version_id``) is what the annotate page loads
(``GET /api/projects/{id}/model``) and what embeddings are computed with. Promoting a version:

* must name a ready version of the project or a global one (official, untrained);
* **rollback** is promoting an earlier version; `rollback_target` is the active version's parent;
* if the new version's **image encoder** is the previous one's, the project's embeddings are still
  valid: rows for the new version are added pointing at the same objects (no recomputation). The
  encoder's identity is ``encoder_sha256`` (the model side's digest of its weights); for versions not
  yet described, ``artifacts["encoder_from"]``: a retraining round only trains the prompt encoder and
  mask decoder, so a trained version records the version whose encoder weights it carries. Otherwise
  (another architecture or other encoder weights, e.g. a round that trained the image encoder: it
  records its new ``encoder_sha256`` and no ``encoder_from``) an embedding job is started for the new
  version. It embeds only the images without a row of the version, so the held-out images the round
  already embedded with its new encoder are not embedded again. Until the job reaches an image, the
  image is served with the embedding of the version that served it before (`pending_embed_job`,
  ``GET /api/images/{id}/embedding``), and the browser decodes it with that version's decoder.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.jobs import service as jobs
from backend.tables import Embedding, Image, Job, ModelVersion, Project
from backend.tables.enums import JobStatus, ModelStatus
from backend.webhooks.events import emit


class PromotionError(ValueError):
    """The version cannot serve this project (another project's, not ready, no parent to roll back to)."""


def encoder_identity(version: ModelVersion) -> int:
    """Id of the version whose image-encoder weights `version` has (its own id unless inherited)."""
    return int((version.artifacts or {}).get("encoder_from", version.id))


def same_encoder(a: ModelVersion, b: ModelVersion) -> bool:
    """Whether `a` and `b` compute the same embeddings (by their encoder digests when both are known)."""
    if a.encoder_sha256 is not None and b.encoder_sha256 is not None:
        return a.encoder_sha256 == b.encoder_sha256
    return encoder_identity(a) == encoder_identity(b)


def pending_embed_job(db: Session, project_id: int, version_id: int) -> Job | None:
    """The project's queued or running embed job for version `version_id`, if any (newest first)."""
    pending = db.scalars(
        select(Job)
        .where(
            Job.project_id == project_id,
            Job.kind == "embed",
            Job.status.in_((JobStatus.queued, JobStatus.running)),
        )
        .order_by(Job.id.desc())
    )
    return next((job for job in pending if job.params.get("model_version_id") == version_id), None)


def project_versions(db: Session, project: Project) -> list[ModelVersion]:
    """The project's own versions and the global ones, newest first."""
    return list(
        db.scalars(
            select(ModelVersion)
            .where((ModelVersion.project_id == project.id) | ModelVersion.project_id.is_(None))
            .order_by(ModelVersion.id.desc())
        )
    )


def check_promotable(project: Project, version: ModelVersion | None) -> ModelVersion:
    if version is None or version.project_id not in (None, project.id):
        raise LookupError("model version not found in this project")
    if version.status != ModelStatus.ready:
        raise PromotionError(f"model version {version.id} is {version.status}, only a ready version can serve")
    return version


def rollback_target(db: Session, project: Project) -> ModelVersion:
    """The parent of the project's active version (PromotionError if it has none)."""
    active = db.get(ModelVersion, project.active_model_version_id) if project.active_model_version_id else None
    parent = db.get(ModelVersion, active.parent_id) if active is not None and active.parent_id is not None else None
    if parent is None:
        raise PromotionError("the active model version has no parent to roll back to; promote a version by id")
    return parent


def reuse_embeddings(db: Session, project_id: int, source_id: int, target_id: int) -> int:
    """Add rows for `target_id` sharing the files of `source_id`'s embeddings (same image encoder)
    for the project's images that have none yet; returns how many. Flushed, not committed."""
    have = select(Embedding.image_id).where(Embedding.model_version_id == target_id)
    rows = db.scalars(
        select(Embedding)
        .join(Image, Image.id == Embedding.image_id)
        .where(Image.project_id == project_id, Embedding.model_version_id == source_id, Embedding.image_id.not_in(have))
    )
    added = 0
    for row in rows:
        db.add(
            Embedding(
                image_id=row.image_id,
                model_version_id=target_id,
                storage_key=row.storage_key,
                dtype=row.dtype,
                shape=row.shape,
                original_h=row.original_h,
                original_w=row.original_w,
                input_h=row.input_h,
                input_w=row.input_w,
            )
        )
        added += 1
    db.flush()
    return added


def promote(
    db: Session, project: Project, version: ModelVersion | None, user_id: int | None, settings: Settings
) -> tuple[int | None, Job | None, int]:
    """Make `version` the project's active one (committed); return (previous id, embed job or None,
    embeddings reused). Raises LookupError / PromotionError as `check_promotable`."""
    version = check_promotable(project, version)
    previous = db.get(ModelVersion, project.active_model_version_id) if project.active_model_version_id else None
    project.active_model_version_id = version.id
    if previous is None or previous.id != version.id:
        emit(
            db,
            project.id,
            "model_version.promoted",
            {"model_version_id": version.id, "previous_id": previous.id if previous else None, "user_id": user_id},
        )
    if previous is not None and previous.id == version.id:
        db.commit()
        return previous.id, None, 0
    if previous is not None and same_encoder(previous, version):
        reused = reuse_embeddings(db, project.id, previous.id, version.id)
        db.commit()
        return previous.id, None, reused
    started = jobs.start_or_existing(
        db,
        settings,
        "embed",
        project.id,
        user_id,
        lambda: jobs.JobInputs(
            {"model_version_id": version.id},
            f"embedding with model version {version.id} (its image encoder is new here)",
        ),
        reuse=lambda pending: pending.params.get("model_version_id") == version.id,
    )
    return (previous.id if previous else None), started.job, 0
