"""The dashboard's figures: mask figures from the rollup tables, the rest from small SQL aggregates.

Image and mask counts, sums, the masks-per-image distribution, pre-fill outcomes, the timeline and the
annotator table read the rollup tables of backend/tables/dashboard.py, which database triggers keep
exact in the same transaction as every mask or image write: thousands of rows per request, not a walk over
millions of masks. All figures stay exact (the tests check hand-worked values):

- median / p90 of seconds per mask: `backend.dashboard.percentiles`, exact from two rollups.
- the masks-per-image histogram sums `image_mask_histogram` (images per masks-per-image count), or
  `author_mask_histogram` for one annotator: one row per distinct count, not one per image.
- floating sums of seconds are maintained by adding and subtracting, so after deletions they can differ
  from a fresh sum in the last bits (~1e-12 relative), well below what any display shows.

Everything is SQLAlchemy Core and runs the same on SQLite and PostgreSQL. A `Scope` with `author_id`
restricts every mask, image, review and timing figure to one user (what an annotator may see);
without it the figures are the whole project's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import ColumnElement, ScalarSelect, Select, func, literal, or_, select
from sqlalchemy.orm import Session

from backend.dashboard.percentiles import author_buckets, many_percentiles, percentiles
from backend.dashboard.schemas import (
    AnnotatorRow,
    DashboardOut,
    EmbeddingCoverageOut,
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
from backend.dashboard.scope import Scope
from backend.jobs.schemas import JobOut
from backend.model_versions.promotion import pending_embed_job
from backend.stages import gates
from backend.stages.schemas import GateOut
from backend.tables import (
    Embedding,
    Image,
    ImageStat,
    ImageStatus,
    Job,
    JobStatus,
    Mask,
    MaskSource,
    MaskTotal,
    ModelVersion,
    Project,
    ReviewDecision,
    ReviewTotal,
    Stage,
    TimelineAuthorDay,
    TimelineAuthorHour,
    TimelineDay,
    TimelineHour,
    User,
)
from backend.tables.dashboard import (
    REVIEW_IOU_THRESHOLD,
    AuthorMaskHistogram,
    ImageMaskHistogram,
)

# Masks per image histogram: inclusive [low, high] bounds, the last one open.
HISTOGRAM_BOUNDS: list[tuple[int, int | None]] = [(0, 0), (1, 9), (10, 24), (25, 49), (50, 99), (100, 199), (200, None)]
RECENT_JOBS = 10


def histogram_bucket(masks: int) -> int:
    """The index in HISTOGRAM_BOUNDS of the bucket holding an image with `masks` masks."""
    return next(i for i, (_, high) in enumerate(HISTOGRAM_BOUNDS) if high is None or masks <= high)


Bucket = Literal["hour", "day"]
TIMELINE_ROWS = 720  # buckets a timeline request returns by default: 30 days of hours, about 2 years of days


def image_stats(db: Session, project: Project, scope: Scope) -> ImagesOut:
    """Images by status (current stage) and finished per stage, from the `image_stats` rollup."""
    where = [ImageStat.project_id == project.id]
    if scope.author_id is not None:
        where.append(ImageStat.assignee_key == scope.author_id)
    by_status = {status: 0 for status in ImageStatus}
    done_per_stage = {stage: 0 for stage in Stage}
    done = [func.sum(getattr(ImageStat, f"done_{stage.value}")) for stage in Stage]
    for status, n, *done_counts in db.execute(
        select(ImageStat.status, func.sum(ImageStat.images), *done).where(*where).group_by(ImageStat.status)
    ):
        by_status[ImageStatus(status)] += int(n)
        for stage, count in zip(Stage, done_counts, strict=True):
            done_per_stage[stage] += int(count)
    return ImagesOut(
        total=sum(by_status.values()), current_stage=project.stage, by_status=by_status, done_per_stage=done_per_stage
    )


def mask_stats(db: Session, scope: Scope, image_total: int) -> tuple[MasksOut, TimingOut, PrefillOut]:
    """Counts by stage and source, the masks-per-image distribution, time/clicks per mask, pre-fill outcomes.

    Pre-fill outcomes count deleted masks too (deleting a pre-filled mask is its outcome).
    """
    sums = [
        func.sum(c)
        for c in (
            MaskTotal.masks,
            MaskTotal.timed,
            MaskTotal.seconds,
            MaskTotal.clicked,
            MaskTotal.clicks,
            MaskTotal.prefill_kept,
            MaskTotal.prefill_corrected,
            MaskTotal.prefill_deleted,
        )
    ]
    where = [MaskTotal.project_id == scope.project_id]
    if scope.author_id is not None:
        where.append(MaskTotal.author_key == scope.author_id)
    grouped = db.execute(
        select(MaskTotal.stage, MaskTotal.source, *sums)
        .where(*where)
        .group_by(MaskTotal.stage, MaskTotal.source)
        .order_by(MaskTotal.stage, MaskTotal.source)
    ).all()
    prefill = PrefillOut(
        kept=int(sum(r[7] or 0 for r in grouped)),
        corrected=int(sum(r[8] or 0 for r in grouped)),
        deleted=int(sum(r[9] or 0 for r in grouped)),
    )
    rows = [
        (Stage(st), MaskSource(src), int(n), int(timed), float(sec or 0), int(clicked), int(clicks or 0))
        for st, src, n, timed, sec, clicked, clicks, *_ in grouped
        if n
    ]
    total = sum(r[2] for r in rows)
    timed = sum(r[3] for r in rows)
    seconds = sum(r[4] for r in rows)
    clicked = sum(r[5] for r in rows)
    clicks = sum(r[6] for r in rows)

    if scope.author_id is None:
        per_count = select(ImageMaskHistogram.masks, ImageMaskHistogram.images).where(
            ImageMaskHistogram.project_id == scope.project_id, ImageMaskHistogram.images > 0
        )
    else:
        per_count = select(AuthorMaskHistogram.masks, AuthorMaskHistogram.images).where(
            AuthorMaskHistogram.project_id == scope.project_id,
            AuthorMaskHistogram.author_key == scope.author_id,
            AuthorMaskHistogram.images > 0,
        )
    counts: dict[int, int] = {}
    for masks_on_image, images in db.execute(per_count):
        b = histogram_bucket(int(masks_on_image))
        counts[b] = counts.get(b, 0) + int(images)
    images_with_masks = sum(counts.values())
    if scope.author_id is None:  # images without any mask; for one annotator "their images" are those they masked
        counts[0] = max(image_total - images_with_masks, 0)
    denominator = image_total if scope.author_id is None else images_with_masks
    median, p90 = percentiles(db, scope, [0.5, 0.9])

    masks = MasksOut(
        total=total,
        by_stage_source=[StageSourceCount(stage=r[0], source=r[1], masks=r[2]) for r in rows],
        by_source={src: sum(r[2] for r in rows if r[1] == src) for src in MaskSource},
        by_stage={st: sum(r[2] for r in rows if r[0] == st) for st in Stage},
        per_image_mean=total / denominator if denominator else None,
        per_image_histogram=[
            HistogramBucket(low=lo, high=hi, images=counts.get(i, 0)) for i, (lo, hi) in enumerate(HISTOGRAM_BOUNDS)
        ],
    )
    timing = TimingOut(
        timed_masks=timed,
        total_seconds=seconds,
        seconds_per_mask_mean=seconds / timed if timed else None,
        seconds_per_mask_median=median,
        seconds_per_mask_p90=p90,
        masks_per_hour=timed * 3600.0 / seconds if seconds > 0 else None,
        clicks_per_mask=clicks / clicked if clicked else None,
    )
    return masks, timing, prefill


def review_stats(db: Session, scope: Scope) -> ReviewOut:
    """Reviews by decision and within the IoU threshold (a reviewed auto mask counts as good when
    IoU(auto mask, mask after review) > REVIEW_IOU_THRESHOLD, as backend/review), from `review_totals`."""
    where = [ReviewTotal.project_id == scope.project_id]
    if scope.author_id is not None:
        where.append(ReviewTotal.reviewer_key == scope.author_id)
    rows = [
        (ReviewDecision(decision), int(n), int(within))
        for decision, n, within in db.execute(
            select(ReviewTotal.decision, func.sum(ReviewTotal.reviews), func.sum(ReviewTotal.within))
            .where(*where)
            .group_by(ReviewTotal.decision)
        )
    ]
    decisions = {decision: n for decision, n, _ in rows}
    within = sum(n for _, _, n in rows)
    reviewed = sum(decisions.values())
    return ReviewOut(
        reviewed=reviewed,
        accepted=decisions.get(ReviewDecision.accept, 0),
        fixed=decisions.get(ReviewDecision.fix, 0),
        rejected=decisions.get(ReviewDecision.reject, 0),
        iou_threshold=REVIEW_IOU_THRESHOLD,
        within_threshold=within,
        share_within=within / reviewed if reviewed else None,
    )


def model_rounds(db: Session, project: Project) -> list[ModelVersionStats]:
    """The project's model versions (and the global one it uses, if any), oldest first = round 1."""
    condition = ModelVersion.project_id == project.id
    if project.active_model_version_id is not None:
        condition = or_(condition, ModelVersion.id == project.active_model_version_id)
    versions = db.scalars(
        select(ModelVersion).where(condition).order_by(ModelVersion.created_at, ModelVersion.id)
    ).all()
    return [
        ModelVersionStats(
            id=v.id,
            round=i + 1,
            name=v.name,
            architecture=v.architecture,
            origin=v.origin.value,
            status=v.status.value,
            active=v.id == project.active_model_version_id,
            parent_id=v.parent_id,
            metrics=v.metrics or {},
            created_at=v.created_at,
            architecture_change=architecture_change(v),
            encoder_trained=(v.hyperparameters or {}).get("encoder_mode", "frozen") != "frozen",
        )
        for i, v in enumerate(versions)
    ]


def architecture_change(version: ModelVersion) -> str | None:
    """ "vit_b → vit_h" when the version's round started from another architecture than the one serving
    the project then (``metrics.architecture_change``, recorded by the round), else None."""
    change = (version.metrics or {}).get("architecture_change")
    if not isinstance(change, dict) or not change.get("from") or not change.get("to"):
        return None
    return f"{change['from']} → {change['to']}"


def embedded_count(project_id: int, version_id: int) -> Select[int]:
    """COUNT of the project's images with an embedding of the version: the images' project index, then
    one probe of the embeddings' unique (image, version) index per image (tests check the plan)."""
    return (
        select(func.count())
        .select_from(Image)
        .join(Embedding, (Embedding.image_id == Image.id) & (Embedding.model_version_id == version_id))
        .where(Image.project_id == project_id)
    )


def embedding_coverage(db: Session, project: Project) -> EmbeddingCoverageOut:
    """The project's images and, while the active version's embed job is pending (a re-embedding after
    a promotion, or new images being embedded), that job and how many images the version has embedded
    so far (`embedded_count`, the one figure of the summary whose cost grows with the project, so it is
    counted only then); the image total is the `image_stats` rollup."""
    images = int(
        db.scalar(select(func.coalesce(func.sum(ImageStat.images), 0)).where(ImageStat.project_id == project.id)) or 0
    )
    version_id = project.active_model_version_id
    job = pending_embed_job(db, project.id, version_id) if version_id is not None else None
    if job is None:
        return EmbeddingCoverageOut(model_version_id=version_id, embedded=None, images=images, job=None)
    return EmbeddingCoverageOut(
        model_version_id=version_id,
        embedded=int(db.scalar(embedded_count(project.id, job.params["model_version_id"])) or 0),
        images=images,
        job=JobOut.model_validate(job),
    )


def job_stats(db: Session, project_id: int) -> JobsOut:
    active = db.scalars(
        select(Job)
        .where(Job.project_id == project_id, Job.status.in_((JobStatus.queued, JobStatus.running)))
        .order_by(Job.id.desc())
    ).all()
    recent = db.scalars(
        select(Job)
        .where(Job.project_id == project_id, Job.status.not_in((JobStatus.queued, JobStatus.running)))
        .order_by(Job.id.desc())
        .limit(RECENT_JOBS)
    ).all()
    return JobsOut(active=[JobOut.model_validate(j) for j in active], recent=[JobOut.model_validate(j) for j in recent])


def dashboard(db: Session, project: Project, scope: Scope) -> DashboardOut:
    images = image_stats(db, project, scope)
    masks, timing, prefill = mask_stats(db, scope, images.total)
    return DashboardOut(
        project_id=project.id,
        scope=scope.name,
        images=images,
        masks=masks,
        timing=timing,
        prefill=prefill,
        review=review_stats(db, scope),
        models=model_rounds(db, project),
        embeddings=embedding_coverage(db, project),
        jobs=job_stats(db, project.id),
        gate=GateOut.model_validate(gates.evaluate(db, project)),
    )


def annotators(db: Session, scope: Scope) -> list[AnnotatorRow]:
    """One row per mask author of the scope: counts, time (median/p90 per author), clicks, images done."""
    where = [MaskTotal.project_id == scope.project_id]
    if scope.author_id is not None:
        where.append(MaskTotal.author_key == scope.author_id)
    rows = db.execute(
        select(
            MaskTotal.author_key,
            User.username,
            func.sum(MaskTotal.masks),
            func.sum(MaskTotal.timed),
            func.sum(MaskTotal.seconds),
            func.sum(MaskTotal.clicked),
            func.sum(MaskTotal.clicks),
        )
        .join(User, User.id == MaskTotal.author_key)
        .where(*where, MaskTotal.author_key > 0)
        .group_by(MaskTotal.author_key, User.username)
        .having(func.sum(MaskTotal.masks) > 0)
        .order_by(MaskTotal.author_key)
    ).all()
    done = {
        a: int(n)
        for a, n in db.execute(
            select(ImageStat.assignee_key, ImageStat.images).where(
                ImageStat.project_id == scope.project_id,
                ImageStat.status == ImageStatus.done.value,
                ImageStat.assignee_key > 0,
            )
        )
    }
    buckets = author_buckets(db, scope.project_id)
    authors = [row[0] for row in rows]
    times = many_percentiles(db, [(Scope(scope.project_id, a), buckets.get(a, [])) for a in authors], [0.5, 0.9])
    span = {}
    if authors:  # first and last live mask of each author: two index probes each, one statement

        def edge(agg: Callable[[Any], ColumnElement[Any]]) -> ScalarSelect[Any]:
            return (
                select(agg(Mask.created_at))
                .where(Mask.project_id == scope.project_id, Mask.deleted_at.is_(None), Mask.author_id == User.id)
                .scalar_subquery()
            )

        span = {
            uid: (first, last)
            for uid, first, last in db.execute(
                select(User.id, edge(func.min), edge(func.max)).where(User.id.in_(authors))
            )
        }
    out = []
    for (author_id, username, n, timed, seconds, clicked, clicks), (median, p90) in zip(rows, times, strict=True):
        n, timed, seconds, clicked, clicks = int(n), int(timed), float(seconds or 0), int(clicked), int(clicks or 0)
        first, last = span[author_id]
        out.append(
            AnnotatorRow(
                user_id=author_id,
                username=username,
                masks=n,
                images_done=done.get(author_id, 0),
                timed_masks=timed,
                total_seconds=seconds,
                seconds_per_mask_median=median,
                seconds_per_mask_p90=p90,
                masks_per_hour=timed * 3600.0 / seconds if seconds > 0 else None,
                clicks_per_mask=clicks / clicked if clicked else None,
                first_mask_at=first,
                last_mask_at=last,
            )
        )
    return out


def timeline(
    db: Session, scope: Scope, bucket: Bucket, before: str | None = None, limit: int = TIMELINE_ROWS
) -> list[TimelineRow]:
    """Masks made per hour/day (UTC), the annotation throughput and the annotators within each: the newest
    `limit` buckets with masks that start before `before` (ISO, as `bucket`; None: up to now), oldest first.

    Each bucket is one rollup row (`timeline_hours/days`, or the author's `timeline_author_hours/days`),
    read backwards along the primary key: the cost is the rows shown, whatever the masks or the project's age.
    """
    table = {
        ("hour", False): TimelineHour,
        ("day", False): TimelineDay,
        ("hour", True): TimelineAuthorHour,
        ("day", True): TimelineAuthorDay,
    }[(bucket, scope.author_id is not None)].__table__.c
    when = table[bucket]
    where = [table["project_id"] == scope.project_id, table["masks"] > 0]
    if scope.author_id is not None:
        where.append(table["author_key"] == scope.author_id)
    if before is not None:
        where.append(when < before)
    people = table["annotators"] if scope.author_id is None else literal(1)
    rows = db.execute(
        select(when, table["masks"], table["manual_masks"], table["timed"], table["seconds"], people)
        .where(*where)
        .order_by(when.desc())
        .limit(limit)
    ).all()
    return [
        TimelineRow(
            bucket=b,
            masks=int(n),
            manual_masks=int(manual),
            timed_masks=int(timed),
            total_seconds=float(s or 0),
            masks_per_hour=int(timed) * 3600.0 / float(s) if s else None,
            annotators=int(people),
        )
        for b, n, manual, timed, s, people in reversed(rows)
    ]
