"""Starting retraining rounds (by hand or when enough new masks came in) and judging their result.

Project settings read here (typed and bounded by `backend.projects.settings.ProjectSettings`):

* ``retrain_every_masks`` (int, default 0 = off): Celery beat starts a round once the project has
  this many new accepted masks since the last round began (`start_due_rounds`). "Since the last
  round" counts masks with an id above the round's watermark (the newest mask id when it was
  started), whatever that round's outcome: a failed or cancelled round waits for N more masks
  instead of being retried every minute.
* ``auto_promote`` (bool, default false): a finished round becomes the project's active version
  only if it beats the version that was active when the round started on the held-out images
  (`is_better`) and that version still serves (someone may have promoted another one meanwhile).
* ``retrain_params`` (object, default {}): the `RetrainParams` of rounds beat starts.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.clients.model_server import model_service
from backend.core.config import Settings
from backend.jobs import service as jobs
from backend.model_versions.service import active_version
from backend.projects.settings import project_settings
from backend.retraining.dataset import accepted_masks_query
from backend.retraining.schemas import RetrainParams
from backend.tables import Job, Mask, ModelVersion, Project
from backend.tables.enums import ModelStatus
from model_server.api import Storage

KIND = "train"
MIN_NOC_GAIN = 0.01  # clicks: a smaller change of mean NoC@90 is a tie
MIN_MIOU_GAIN = 0.001  # a smaller gain of single-point mIoU is a tie


class RoundConflict(Exception):
    """A round of this project is already queued or running."""


class NotEnoughMasks(ValueError):
    """The project has fewer accepted masks than the round needs."""


class BadStartingVersion(ValueError):
    """`from_model_version_id` names no ready version of the project or a global one."""


def is_better(new: dict[str, float], active: dict[str, float]) -> bool:
    """Whether held-out metrics `new` beat `active` (both measured on the same held-out masks).

    Fewer clicks to 90% IoU (NoC@90) first: it is what an annotator's time depends on. On a tie
    (e.g. both never reach 90% and score max_clicks), the higher single-point mIoU wins. Promotion
    needs evidence: a gain smaller than `MIN_NOC_GAIN` / `MIN_MIOU_GAIN` is a tie (weights that
    barely moved differ in the last float digits of their metrics, and that is not better).
    """
    new_noc, old_noc = float(new["noc90"]), float(active["noc90"])
    if abs(new_noc - old_noc) >= MIN_NOC_GAIN:
        return new_noc < old_noc
    return float(new["miou_1pt"]) >= float(active["miou_1pt"]) + MIN_MIOU_GAIN


def accepted_mask_count(db: Session, project_id: int, after_id: int = 0) -> int:
    query = accepted_masks_query(project_id).where(Mask.id > after_id).order_by(None)
    return db.scalar(select(func.count()).select_from(query.subquery())) or 0


def _max_mask_id(db: Session, project_id: int) -> int:
    return db.scalar(select(func.max(Mask.id)).where(Mask.project_id == project_id)) or 0


def last_watermark(db: Session, project_id: int) -> int:
    """The newest mask id when the project's last round started (0 before the first round)."""
    last = db.scalar(select(Job).where(Job.project_id == project_id, Job.kind == KIND).order_by(Job.id.desc()))
    return int(last.params.get("mask_watermark", 0)) if last is not None else 0


def start_round(
    db: Session,
    project: Project,
    user_id: int | None,
    params: RetrainParams,
    settings: Settings,
    storage: Storage,
    reason: str = "started by hand",
) -> Job:
    """Create and send a `train` job for `project` (committed); it trains from the active version, or
    from ``params.from_model_version_id``. The job records both: ``model_version_id`` is the version
    the round starts from (its parent), ``active_model_version_id`` the one serving the project now,
    which the new version must beat to be auto-promoted.

    Raises:
        RoundConflict: a round of the project is queued or running.
        NotEnoughMasks: fewer accepted masks than ``params.min_masks`` (checked again by the task,
            which also drops masks covering most of their image).
        BadStartingVersion: ``from_model_version_id`` is not a ready version of the project or a global one.
    """

    def inputs() -> jobs.JobInputs:
        count = accepted_mask_count(db, project.id)
        if count < params.min_masks:
            raise NotEnoughMasks(
                f"not enough masks to retrain: the project has {count} accepted mask(s), "
                f"a round needs at least {params.min_masks} (min_masks)"
            )
        active = active_version(db, project, storage, model_service(settings, storage), settings)
        start = active if params.from_model_version_id is None else starting_version(db, project, params)
        return jobs.JobInputs(
            {
                "model_version_id": start.id,
                "active_model_version_id": active.id,
                "params": params.model_dump(),
                "mask_watermark": _max_mask_id(db, project.id),
                "reason": reason,
            },
            f"retraining from model version {start.id} ({reason})",
        )

    job, created = jobs.start_or_existing(db, settings, KIND, project.id, user_id, inputs)
    if not created:
        raise RoundConflict(f"a retraining round of project {project.id} is already {job.status} (job {job.id})")
    return job


def starting_version(db: Session, project: Project, params: RetrainParams) -> ModelVersion:
    """The version ``params.from_model_version_id`` names, if a round of `project` may start from it."""
    version = db.get(ModelVersion, params.from_model_version_id)
    if version is None or version.project_id not in (None, project.id):
        raise BadStartingVersion(
            f"from_model_version_id {params.from_model_version_id}: no such model version in this project "
            "(a round starts from a version of the project or a global one)"
        )
    if version.status != ModelStatus.ready:
        raise BadStartingVersion(
            f"from_model_version_id {version.id}: the version is {version.status}, a round starts from a ready one"
        )
    return version


def start_due_rounds(db: Session, settings: Settings, storage: Storage) -> list[tuple[int, int]]:
    """Start a round in every project whose `retrain_every_masks` new masks have come in.

    Returns (project id, job id) of each round started.
    """
    started: list[tuple[int, int]] = []
    for project in db.scalars(select(Project).order_by(Project.id)):
        round_settings = project_settings(project)
        every = round_settings.retrain_every_masks
        if not every or jobs.pending_job(db, project.id, KIND) is not None:
            continue
        new = accepted_mask_count(db, project.id, after_id=last_watermark(db, project.id))
        if new < every:
            continue
        try:
            job = start_round(
                db,
                project,
                None,
                round_settings.retrain_params,
                settings,
                storage,
                reason=f"{new} new masks since the last round (retrain_every_masks={every})",
            )
        except (RoundConflict, NotEnoughMasks, BadStartingVersion):
            db.rollback()
            continue
        started.append((project.id, job.id))
    return started


def round_auto_promote(project: Project, params: RetrainParams) -> bool:
    """The round's own choice if given, else the project's setting."""
    if params.auto_promote is not None:
        return params.auto_promote
    return project_settings(project).auto_promote
