"""The dashboard's figures, each one SQL aggregate over the project's rows (no per-row Python loops).

Everything is written once in SQLAlchemy Core and runs the same on SQLite and PostgreSQL. Percentiles
(median and p90 of seconds per mask) use the portable ORDER BY + OFFSET form: count the n values, then
read the one or two values around position q*(n-1) and interpolate linearly between them, which is
exactly PostgreSQL's `percentile_cont(q)`. With the partial index (project_id, seconds_spent) WHERE
deleted_at IS NULL that is an index-only walk on PostgreSQL, not a sort of every mask.

A `Scope` with `author_id` restricts every mask, image, review and timing figure to one user (what an
annotator may see); without it the figures are the whole project's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, case, func, literal_column, or_, select
from sqlalchemy.orm import Session

from backend.dashboard import gates
from backend.dashboard.schemas import (
    AnnotatorRow,
    DashboardOut,
    GateOut,
    HistogramBucket,
    ImagesOut,
    JobsOut,
    MasksOut,
    ModelVersionStats,
    PrefillOut,
    ReviewOut,
    StageSourceCount,
    TimelineRow,
    TimingOut,
)
from backend.jobs.schemas import JobOut
from backend.models import (
    Image,
    ImageStatus,
    Job,
    JobStatus,
    Mask,
    MaskReview,
    MaskSource,
    ModelVersion,
    PrefillOutcome,
    Project,
    ReviewDecision,
    Stage,
    User,
)

# Masks per image histogram: inclusive [low, high] bounds, the last one open.
HISTOGRAM_BOUNDS: list[tuple[int, int | None]] = [(0, 0), (1, 9), (10, 24), (25, 49), (50, 99), (100, 199), (200, None)]
# A reviewed auto mask counts as good when IoU(auto mask, mask after review) > this (as backend/review).
REVIEW_IOU_THRESHOLD = 0.9
RECENT_JOBS = 10
Bucket = Literal["hour", "day"]


@dataclass(frozen=True)
class Scope:
    project_id: int
    author_id: int | None = None  # None: the whole project

    @property
    def name(self) -> Literal["project", "me"]:
        return "project" if self.author_id is None else "me"


def live_masks(scope: Scope) -> list[ColumnElement[bool]]:
    """WHERE clauses of the scope's masks that still exist (soft-deleted ones excluded)."""
    where = [Mask.project_id == scope.project_id, Mask.deleted_at.is_(None)]
    if scope.author_id is not None:
        where.append(Mask.author_id == scope.author_id)
    return where


def percentiles(db: Session, where: Sequence[ColumnElement[bool]], column, qs: Sequence[float],  # type: ignore[no-untyped-def]
                n: int | None = None) -> list[float | None]:
    """`percentile_cont(q)` of `column` over the rows matching `where` (NULLs ignored), portably.

    `n`, the number of such non-NULL values, is counted here unless the caller already knows it.
    """
    where = [*where, column.is_not(None)]
    if n is None:
        n = db.scalar(select(func.count()).select_from(Mask).where(*where)) or 0
    out: list[float | None] = []
    for q in qs:
        if n == 0:
            out.append(None)
            continue
        position = q * (n - 1)
        low = math.floor(position)
        values = db.scalars(select(column).where(*where).order_by(column).offset(low).limit(2)).all()
        value = float(values[0])
        if position > low and len(values) == 2:
            value += (position - low) * (float(values[1]) - value)
        out.append(value)
    return out


def image_stats(db: Session, project: Project, scope: Scope) -> ImagesOut:
    where = [Image.project_id == project.id]
    if scope.author_id is not None:
        where.append(Image.assignee_id == scope.author_id)
    by_status = {status: 0 for status in ImageStatus}
    for status, n in db.execute(select(Image.status, func.count()).where(*where).group_by(Image.status)):
        by_status[status] = n
    columns = [func.count(Image.stage_done[s.value].as_string()).label(s.value) for s in Stage]
    done_row = db.execute(select(*columns).where(*where)).one()
    return ImagesOut(
        total=sum(by_status.values()), current_stage=project.stage, by_status=by_status,
        done_per_stage={s: getattr(done_row, s.value) for s in Stage},
    )


def mask_stats(db: Session, scope: Scope, image_total: int) -> tuple[MasksOut, TimingOut]:
    """Counts by stage and source, the masks-per-image distribution, and time/clicks per mask."""
    where = live_masks(scope)
    rows = db.execute(
        select(Mask.stage, Mask.source, func.count(), func.count(Mask.seconds_spent), func.sum(Mask.seconds_spent),
               func.count(Mask.clicks), func.sum(Mask.clicks))
        .where(*where).group_by(Mask.stage, Mask.source).order_by(Mask.stage, Mask.source)
    ).all()
    total = sum(r[2] for r in rows)
    timed = sum(r[3] for r in rows)
    seconds = float(sum(r[4] or 0 for r in rows))
    clicked = sum(r[5] for r in rows)
    clicks = sum(r[6] or 0 for r in rows)

    per_image = select(func.count().label("n")).where(*where).group_by(Mask.image_id).subquery()
    bucket = case(*[(per_image.c.n <= high, i) for i, (_, high) in enumerate(HISTOGRAM_BOUNDS) if high is not None],
                  else_=len(HISTOGRAM_BOUNDS) - 1)
    counts = dict(db.execute(select(bucket, func.count()).group_by(bucket)).all())
    images_with_masks = sum(counts.values())
    if scope.author_id is None:  # images without any mask; for one annotator "their images" are those they masked
        counts[0] = max(image_total - images_with_masks, 0)
    denominator = image_total if scope.author_id is None else images_with_masks
    median, p90 = percentiles(db, where, Mask.seconds_spent, [0.5, 0.9], n=timed)

    masks = MasksOut(
        total=total,
        by_stage_source=[StageSourceCount(stage=r[0], source=r[1], masks=r[2]) for r in rows],
        by_source={src: sum(r[2] for r in rows if r[1] == src) for src in MaskSource},
        by_stage={st: sum(r[2] for r in rows if r[0] == st) for st in Stage},
        per_image_mean=total / denominator if denominator else None,
        per_image_histogram=[HistogramBucket(low=lo, high=hi, images=counts.get(i, 0))
                             for i, (lo, hi) in enumerate(HISTOGRAM_BOUNDS)],
    )
    timing = TimingOut(
        timed_masks=timed, total_seconds=seconds,
        seconds_per_mask_mean=seconds / timed if timed else None,
        seconds_per_mask_median=median, seconds_per_mask_p90=p90,
        masks_per_hour=timed * 3600.0 / seconds if seconds > 0 else None,
        clicks_per_mask=clicks / clicked if clicked else None,
    )
    return masks, timing


def prefill_stats(db: Session, scope: Scope) -> PrefillOut:
    """What annotators did with pre-filled masks; deleted ones count too (that is the outcome)."""
    where = [Mask.project_id == scope.project_id, Mask.prefill_outcome.is_not(None)]
    if scope.author_id is not None:
        where.append(Mask.author_id == scope.author_id)
    counts = dict(db.execute(select(Mask.prefill_outcome, func.count()).where(*where).group_by(Mask.prefill_outcome)).all())
    return PrefillOut(**{o.value: counts.get(o, 0) for o in PrefillOutcome})


def review_stats(db: Session, scope: Scope) -> ReviewOut:
    where = [MaskReview.project_id == scope.project_id]
    if scope.author_id is not None:
        where.append(MaskReview.reviewer_id == scope.author_id)
    decisions = dict(db.execute(select(MaskReview.decision, func.count()).where(*where).group_by(MaskReview.decision)).all())
    within = db.scalar(select(func.count()).select_from(MaskReview).where(*where, MaskReview.iou > REVIEW_IOU_THRESHOLD)) or 0
    reviewed = sum(decisions.values())
    return ReviewOut(
        reviewed=reviewed, accepted=decisions.get(ReviewDecision.accept, 0), fixed=decisions.get(ReviewDecision.fix, 0),
        rejected=decisions.get(ReviewDecision.reject, 0), iou_threshold=REVIEW_IOU_THRESHOLD,
        within_threshold=within, share_within=within / reviewed if reviewed else None,
    )


def model_rounds(db: Session, project: Project) -> list[ModelVersionStats]:
    """The project's model versions (and the global one it uses, if any), oldest first = round 1."""
    condition = ModelVersion.project_id == project.id
    if project.active_model_version_id is not None:
        condition = or_(condition, ModelVersion.id == project.active_model_version_id)
    versions = db.scalars(select(ModelVersion).where(condition).order_by(ModelVersion.created_at, ModelVersion.id)).all()
    return [
        ModelVersionStats(
            id=v.id, round=i + 1, name=v.name, architecture=v.architecture, origin=v.origin.value,
            status=v.status.value, active=v.id == project.active_model_version_id, parent_id=v.parent_id,
            metrics=v.metrics or {}, created_at=v.created_at,
        )
        for i, v in enumerate(versions)
    ]


def job_stats(db: Session, project_id: int) -> JobsOut:
    active = db.scalars(select(Job).where(Job.project_id == project_id, Job.status.in_((JobStatus.queued, JobStatus.running)))
                        .order_by(Job.id.desc())).all()
    recent = db.scalars(select(Job).where(Job.project_id == project_id, Job.status.not_in((JobStatus.queued, JobStatus.running)))
                        .order_by(Job.id.desc()).limit(RECENT_JOBS)).all()
    return JobsOut(active=[JobOut.model_validate(j) for j in active], recent=[JobOut.model_validate(j) for j in recent])


def dashboard(db: Session, project: Project, scope: Scope) -> DashboardOut:
    images = image_stats(db, project, scope)
    masks, timing = mask_stats(db, scope, images.total)
    return DashboardOut(
        project_id=project.id, scope=scope.name, images=images, masks=masks, timing=timing,
        prefill=prefill_stats(db, scope), review=review_stats(db, scope), models=model_rounds(db, project),
        jobs=job_stats(db, project.id), gate=GateOut.model_validate(gates.gate_dict(gates.evaluate(db, project))),
    )


def annotators(db: Session, scope: Scope) -> list[AnnotatorRow]:
    """One row per mask author of the scope: counts, time (median/p90 per author), clicks, images done."""
    where = [*live_masks(scope), Mask.author_id.is_not(None)]
    rows = db.execute(
        select(Mask.author_id, User.username, func.count(), func.count(Mask.seconds_spent), func.sum(Mask.seconds_spent),
               func.count(Mask.clicks), func.sum(Mask.clicks), func.min(Mask.created_at), func.max(Mask.created_at))
        .join(User, User.id == Mask.author_id).where(*where).group_by(Mask.author_id, User.username).order_by(Mask.author_id)
    ).all()
    done_where = [Image.project_id == scope.project_id, Image.status == ImageStatus.done, Image.assignee_id.is_not(None)]
    done = dict(db.execute(select(Image.assignee_id, func.count()).where(*done_where).group_by(Image.assignee_id)).all())
    out = []
    for author_id, username, n, timed, seconds, clicked, clicks, first, last in rows:
        seconds = float(seconds or 0)
        median, p90 = percentiles(db, [*where, Mask.author_id == author_id], Mask.seconds_spent, [0.5, 0.9], n=timed)
        out.append(AnnotatorRow(
            user_id=author_id, username=username, masks=n, images_done=done.get(author_id, 0), timed_masks=timed,
            total_seconds=seconds, seconds_per_mask_median=median, seconds_per_mask_p90=p90,
            masks_per_hour=timed * 3600.0 / seconds if seconds > 0 else None,
            clicks_per_mask=(clicks or 0) / clicked if clicked else None,
            first_mask_at=first, last_mask_at=last,
        ))
    return out


def bucket_expression(dialect: str, bucket: Bucket) -> ColumnElement[str]:
    """The ISO start (UTC) of the hour or day of `masks.created_at`, as text, on this dialect."""
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%dT%H:00:00" if bucket == "hour" else "%Y-%m-%dT00:00:00", Mask.created_at)
    utc = func.timezone("UTC", Mask.created_at)
    return func.to_char(func.date_trunc(bucket, utc), literal_column("'YYYY-MM-DD\"T\"HH24:00:00'"))


def timeline(db: Session, scope: Scope, bucket: Bucket) -> list[TimelineRow]:
    """Masks made per hour/day, and the annotation throughput within each."""
    key = bucket_expression(db.get_bind().dialect.name, bucket).label("bucket")
    rows = db.execute(
        select(key, func.count(), func.count(case((Mask.source == MaskSource.manual, 1))),
               func.count(Mask.seconds_spent), func.sum(Mask.seconds_spent), func.count(func.distinct(Mask.author_id)))
        .where(*live_masks(scope)).group_by(key).order_by(key)
    ).all()
    return [
        TimelineRow(bucket=b, masks=n, manual_masks=manual, timed_masks=timed, total_seconds=float(s or 0),
                    masks_per_hour=timed * 3600.0 / float(s) if s else None, annotators=people)
        for b, n, manual, timed, s, people in rows
    ]
