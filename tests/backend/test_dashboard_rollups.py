"""The dashboard rollups stay equal to a fresh recomputation from `masks` and `images` through every kind
of write (ORM insert/update, Core UPDATE as the review flow does, Core DELETE, image and user deletion
cascades, a rolled-back transaction, the stage move's bulk image update, multi-row bulk loads), on SQLite
and PostgreSQL; the timeline, the masks-per-image histograms and the seconds-per-mask percentiles they
serve equal the figures computed from the raw mask rows; and `dataengine rebuild-rollups` repairs them."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from backend.cli import main
from backend.core.db import make_engine
from backend.core.migrations import upgrade
from backend.dashboard import service
from backend.dashboard.rollups import rebuild_rollups
from backend.masks import provenance
from backend.masks.writer import NewMask, insert_masks
from backend.stages import gates
from backend.stages import service as stages
from backend.tables import (
    Image,
    ImageStatus,
    Mask,
    MaskReview,
    MaskSource,
    PrefillOutcome,
    Project,
    ReviewDecision,
    Role,
    Stage,
    User,
)

TABLES = {
    "mask_totals": "project_id, stage, source, author_key, masks, timed, seconds, clicked, clicks, "
    "prefill_kept, prefill_corrected, prefill_deleted",
    "timeline_hours": "project_id, hour, masks, manual_masks, timed, seconds, annotators",
    "timeline_days": "project_id, day, masks, manual_masks, timed, seconds, annotators",
    "timeline_author_hours": "project_id, author_key, hour, masks, manual_masks, timed, seconds",
    "timeline_author_days": "project_id, author_key, day, masks, manual_masks, timed, seconds",
    "mask_seconds": "project_id, author_key, bucket, masks",
    "image_mask_counts": "project_id, image_id, author_key, masks",
    "image_mask_totals": "project_id, image_id, masks",
    "image_stats": "project_id, assignee_key, status, images, done_assisted_manual, done_semi_automatic, "
    "done_fully_automatic, done_done",
    "review_totals": "project_id, reviewer_key, decision, reviews, within",
    "mask_seconds_values": "project_id, author_key, seconds, masks",
    "image_mask_histogram": "project_id, masks, images",
    "author_mask_histogram": "project_id, author_key, masks, images",
}
KEYS = {
    "mask_totals": 4,
    "timeline_hours": 2,
    "timeline_days": 2,
    "timeline_author_hours": 3,
    "timeline_author_days": 3,
    "mask_seconds": 3,
    "image_mask_counts": 3,
    "image_mask_totals": 2,
    "image_stats": 3,
    "review_totals": 3,
    "mask_seconds_values": 3,
    "image_mask_histogram": 2,
    "author_mask_histogram": 3,
}


def snapshot(db) -> dict[str, list[tuple]]:
    """Every rollup row with something in it (the triggers leave emptied rows behind; a rebuild does not)."""
    out = {}
    for table, columns in TABLES.items():
        rows = db.execute(text(f"SELECT {columns} FROM {table}")).all()
        k = KEYS[table]
        out[table] = sorted(
            tuple(r[:k]) + tuple(round(float(v), 9) for v in r[k:]) for r in rows if any(v != 0 for v in r[k:])
        )
    return out


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def images(db, project) -> list[Image]:
    out = [
        Image(
            project_id=project.id,
            file_name=f"i{i}.jpg",
            storage_key=f"k{i}",
            sha256=f"{i:064d}",
            width=4,
            height=4,
            size_bytes=1,
        )
        for i in range(3)
    ]
    db.add_all(out)
    db.commit()
    return out


def new_mask(
    project,
    image,
    author=None,
    seconds=None,
    clicks=None,
    source=MaskSource.manual,
    stage=Stage.assisted_manual,
    created=None,
    **kw,
) -> Mask:
    return Mask(
        image_id=image.id,
        project_id=project.id,
        rle={"size": [4, 4], "counts": "04"},
        bbox=[0, 0, 1, 1],
        area=1,
        source=source,
        stage=stage,
        author_id=author.id if author else None,
        seconds_spent=seconds,
        clicks=clicks,
        provenance={"origin": "annotated" if source == MaskSource.manual else source.value},
        created_at=created or at(1, 10),
        **kw,
    )


def test_rollups_follow_every_write_path(db, project, images, make_user):
    a1, a2 = make_user(Role.annotator, "r1"), make_user(Role.annotator, "r2")
    masks = [
        new_mask(project, images[0], a1, 10.0, 3, created=at(1, 10, 5)),
        new_mask(project, images[0], a1, 0.1, 1, created=at(1, 10, 59)),
        new_mask(project, images[1], a2, 7.25, None, created=at(1, 11)),
        new_mask(project, images[1], None, None, None, MaskSource.auto, Stage.fully_automatic, created=at(2, 0)),
        new_mask(
            project,
            images[2],
            None,
            None,
            None,
            MaskSource.detector,
            Stage.semi_automatic,
            prefill_outcome=PrefillOutcome.kept,
        ),
        new_mask(project, images[2], a2, 3.0, 2, deleted_at=at(3, 0)),
    ]
    db.add_all(masks)
    db.commit()
    assert db.scalar(text("SELECT SUM(masks) FROM timeline_hours")) == 5  # inserted live masks

    masks[0].seconds_spent, masks[0].clicks = 12.5, 4  # ORM update of timing
    masks[1].author_id = a2.id  # reassigned
    masks[2].stage = Stage.semi_automatic
    masks[5].deleted_at = None  # undeleted
    db.commit()
    db.execute(
        update(Mask)
        .where(Mask.id == masks[3].id)  # the review flow's Core UPDATE (a reject)
        .values(deleted_at=at(4, 0), prefill_outcome=PrefillOutcome.deleted)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    db.add(new_mask(project, images[0], a1, 99.0, 9))
    db.flush()
    db.rollback()  # a rolled-back insert leaves no trace
    db.execute(delete(Mask).where(Mask.id == masks[4].id))  # hard delete
    db.commit()
    db.delete(db.get(User, a1.id))  # author_id SET NULL
    db.commit()

    incremental = snapshot(db)
    rebuild_rollups(db, project.id)
    db.commit()
    assert snapshot(db) == incremental
    assert sum(r[2] for r in incremental["timeline_hours"]) == 4  # live: masks 0, 1, 2, 5

    db.delete(db.get(Image, images[0].id))  # cascades to its masks
    db.commit()
    incremental = snapshot(db)
    rebuild_rollups(db, project.id)
    db.commit()
    assert snapshot(db) == incremental
    assert sorted({r[1] for r in incremental["image_mask_counts"]}) == [images[1].id, images[2].id]


def test_percentiles_exact_across_bucket_edges(db, project, images, make_user):
    """Values on and around quarter-second bucket edges, many in one bucket: still percentile_cont exactly."""
    a1 = make_user(Role.annotator, "p1")
    values = [0.0, 0.25, 0.2499999, 0.5, 0.75, 1.0, 1.1, 1.1, 1.1, 1.2, 1.24, 3.75, 100.0, 0.1, 0.2]
    db.add_all([new_mask(project, images[i % 3], a1, v) for i, v in enumerate(values)])
    db.commit()
    ordered = sorted(values)
    for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
        position = q * (len(ordered) - 1)
        low = int(position)
        expected = ordered[low] + (position - low) * (
            (ordered[low + 1] if low + 1 < len(ordered) else ordered[low]) - ordered[low]
        )
        assert service.percentiles(db, service.Scope(project.id), [q]) == [pytest.approx(expected)]
        assert service.percentiles(db, service.Scope(project.id, a1.id), [q]) == [pytest.approx(expected)]


def test_cli_rebuild_repairs_rollups(db, project, images, make_user, settings, monkeypatch, capsys):
    a1 = make_user(Role.annotator, "c1")
    db.add_all([new_mask(project, images[0], a1, 5.0, 1), new_mask(project, images[1], a1, 6.0, 2)])
    db.commit()
    good = snapshot(db)
    db.execute(text("DELETE FROM mask_totals"))
    db.execute(text("UPDATE image_mask_counts SET masks = 7"))
    db.commit()
    assert snapshot(db) != good
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", settings.db_url)
    monkeypatch.setenv("DATAENGINE_SECRET_KEY", settings.secret_key)
    assert main(["rebuild-rollups", "--project", str(project.id)]) == 0
    assert "rebuilt dashboard rollups of project" in capsys.readouterr().out
    db.expire_all()
    assert snapshot(db) == good
    assert main(["rebuild-rollups", "--project", "999999"]) != 0


def test_image_rollup_follows_claims_stage_marks_and_the_stage_move(db, project, images, make_user):
    a1 = make_user(Role.annotator, "s1")
    images[0].status, images[0].assignee_id = ImageStatus.in_progress, a1.id  # a claim
    db.commit()
    images[0].status = ImageStatus.done  # done, and recorded as finished in the stage
    images[0].stage_done = {**images[0].stage_done, "assisted_manual": at(1, 12).isoformat()}
    images[1].stage_done = {"assisted_manual": at(1, 13).isoformat(), "semi_automatic": None}  # null: not done
    images[2].status = ImageStatus.skipped
    db.add(
        Image(
            project_id=project.id,
            file_name="late.jpg",
            storage_key="kl",
            sha256="f" * 64,
            width=4,
            height=4,
            size_bytes=1,
            status=ImageStatus.done,
            assignee_id=a1.id,
        )
    )
    db.commit()
    incremental = snapshot(db)
    assert [r[3:] for r in incremental["image_stats"] if r[1] == a1.id] == [(2, 1, 0, 0, 0)]
    rebuild_rollups(db, project.id)
    db.commit()
    assert snapshot(db) == incremental
    d = service.image_stats(db, project, service.Scope(project.id))
    assert d.by_status == {ImageStatus.new: 1, ImageStatus.in_progress: 0, ImageStatus.done: 2, ImageStatus.skipped: 1}
    assert d.done_per_stage == {
        Stage.assisted_manual: 2,
        Stage.semi_automatic: 0,
        Stage.fully_automatic: 0,
        Stage.done: 0,
    }
    # done in the current stage: status done (2) or stage_done (img0, img1) -> img0, img1, late = 3 of 4
    condition = next(c for c in gates.DEFAULT_GATES[Stage.semi_automatic] if c.kind == "done_share")
    assert gates.measure(db, project, condition) == pytest.approx(3 / 4)

    project.settings = {"gates": {"semi_automatic": {k: 0 for k in ("min_masks", "min_detectors")}}}
    db.commit()
    stages.advance_stage(db, project, Stage.semi_automatic)  # Core UPDATE of every image
    incremental = snapshot(db)
    assert [r[2:4] for r in incremental["image_stats"]] == [("new", 4)]
    rebuild_rollups(db, project.id)
    db.commit()
    assert snapshot(db) == incremental
    assert gates.measure(db, project, condition) == pytest.approx(2 / 4)  # stage_done only, now history


def raw_timeline(db, project_id: int, bucket: str, author_id: int | None = None) -> list[tuple]:
    """The timeline computed in Python from the live mask rows: (bucket, masks, manual, timed, seconds, annotators)."""
    where = [Mask.project_id == project_id, Mask.deleted_at.is_(None)]
    if author_id is not None:
        where.append(Mask.author_id == author_id)
    groups: dict[str, list] = defaultdict(lambda: [0, 0, 0, 0.0, set()])
    for created, source, seconds, author in db.execute(
        select(Mask.created_at, Mask.source, Mask.seconds_spent, Mask.author_id).where(*where)
    ):
        created = created.astimezone(UTC) if created.tzinfo else created  # SQLite gives naive UTC
        key = created.strftime("%Y-%m-%dT%H:00:00" if bucket == "hour" else "%Y-%m-%dT00:00:00")
        g = groups[key]
        g[0] += 1
        g[1] += source == MaskSource.manual
        if seconds is not None:
            g[2] += 1
            g[3] += seconds
        if author is not None:
            g[4].add(author)
    return [
        (k, n, manual, timed, round(sec, 6), len(people))
        for k, (n, manual, timed, sec, people) in sorted(groups.items())
    ]


def served_timeline(db, project_id: int, bucket: str, author_id: int | None = None) -> list[tuple]:
    rows = service.timeline(db, service.Scope(project_id, author_id), bucket, limit=10_000)  # type: ignore[arg-type]
    return [(r.bucket, r.masks, r.manual_masks, r.timed_masks, round(r.total_seconds, 6), r.annotators) for r in rows]


def raw_figures(db, project_id: int, author_id: int | None = None) -> tuple:
    """(masks-per-image histogram, median, p90 of seconds) computed in Python from the live mask rows."""
    where = [Mask.project_id == project_id, Mask.deleted_at.is_(None)]
    if author_id is not None:
        where.append(Mask.author_id == author_id)
    per_image: dict[int, int] = defaultdict(int)
    seconds = []
    for image_id, spent in db.execute(select(Mask.image_id, Mask.seconds_spent).where(*where)):
        per_image[image_id] += 1
        if spent is not None:
            seconds.append(spent)
    histogram = [0] * len(service.HISTOGRAM_BOUNDS)
    for n in per_image.values():
        histogram[service.histogram_bucket(n)] += 1
    if author_id is None:  # the project's images without a live mask
        histogram[0] = db.scalar(select(func.count()).select_from(Image).where(Image.project_id == project_id)) - len(
            per_image
        )
    ordered = sorted(seconds)

    def cont(q: float) -> float | None:
        if not ordered:
            return None
        position = q * (len(ordered) - 1)
        low = int(position)
        high = ordered[min(low + 1, len(ordered) - 1)]
        return round(ordered[low] + (position - low) * (high - ordered[low]), 9)

    return histogram, cont(0.5), cont(0.9)


def served_figures(db, project_id: int, author_id: int | None = None) -> tuple:
    images = db.scalar(select(func.count()).select_from(Image).where(Image.project_id == project_id))
    masks, timing, _ = service.mask_stats(db, service.Scope(project_id, author_id), images)
    median, p90 = timing.seconds_per_mask_median, timing.seconds_per_mask_p90
    return (
        [b.images for b in masks.per_image_histogram],
        None if median is None else round(median, 9),
        None if p90 is None else round(p90, 9),
    )


def assert_timeline_is_raw(db, project_id: int, authors) -> None:
    """The timeline, the histogram and the percentiles served equal the raw rows', project-wide and per author."""
    for bucket in ("hour", "day"):
        assert served_timeline(db, project_id, bucket) == raw_timeline(db, project_id, bucket)
        for a in authors:
            assert served_timeline(db, project_id, bucket, a.id) == raw_timeline(db, project_id, bucket, a.id)
    assert served_figures(db, project_id) == raw_figures(db, project_id)
    for a in authors:
        assert served_figures(db, project_id, a.id) == raw_figures(db, project_id, a.id)


def bulk_rows(project, images, n: int, start: datetime, author=None, source=MaskSource.auto) -> list[dict]:
    """`n` mask rows over the images, one per 7 minutes from `start` (a multi-row INSERT's values)."""
    return [
        {
            "image_id": images[i % len(images)].id,
            "project_id": project.id,
            "rle": {"size": [4, 4], "counts": "04"},
            "bbox": [0, 0, 1, 1],
            "area": 1,
            "source": source,
            "stage": Stage.fully_automatic if source == MaskSource.auto else Stage.assisted_manual,
            "provenance": {"origin": "auto" if source == MaskSource.auto else "annotated"},
            "author_id": author.id if author else None,
            "seconds_spent": 1.5 + i % 4 if author else None,
            "clicks": 1 + i % 3 if author else None,
            "created_at": start + timedelta(minutes=7 * i),
            "updated_at": start,
        }
        for i in range(n)
    ]


def test_timeline_equals_the_raw_rows_through_inserts_updates_soft_deletes_and_bulk_loads(
    db, project, images, make_user
):
    a1, a2 = make_user(Role.annotator, "t1"), make_user(Role.annotator, "t2")
    db.add_all(
        [
            new_mask(project, images[0], a1, 10.0, 3, created=at(1, 10, 5)),
            new_mask(project, images[0], a1, 2.0, 1, created=at(1, 10, 59)),
            new_mask(project, images[1], a2, 7.25, None, created=at(1, 10, 30)),
            new_mask(project, images[1], a2, None, None, created=at(1, 23, 59)),
            new_mask(project, images[2], None, None, None, MaskSource.auto, Stage.fully_automatic, created=at(2, 0)),
        ]
    )
    db.commit()
    assert_timeline_is_raw(db, project.id, [a1, a2])
    assert served_timeline(db, project.id, "hour")[0] == ("2026-01-01T10:00:00", 3, 3, 3, 19.25, 2)

    # Bulk loads: multi-row INSERTs (the mask writer's form) of auto masks and of one annotator's masks,
    # over many hours and days in one statement each.
    db.execute(insert(Mask).values(bulk_rows(project, images, 300, at(2, 3))))
    db.execute(insert(Mask).values(bulk_rows(project, images, 120, at(2, 5, 30), a2, MaskSource.manual)))
    db.commit()
    assert_timeline_is_raw(db, project.id, [a1, a2])

    # Updates that move masks between buckets and authors, soft deletes (one by one and in bulk), undelete.
    first = db.scalars(select(Mask).where(Mask.author_id == a1.id).order_by(Mask.id)).first()
    first.created_at, first.author_id = at(3, 8), a2.id
    db.commit()
    db.execute(
        update(Mask)
        .where(Mask.author_id == a2.id, Mask.id % 3 == 0)
        .values(deleted_at=at(5, 0))
        .execution_options(synchronize_session=False)
    )
    db.execute(
        update(Mask)
        .where(Mask.source == MaskSource.auto, Mask.id % 2 == 0)
        .values(deleted_at=at(5, 0))
        .execution_options(synchronize_session=False)
    )
    db.commit()
    assert_timeline_is_raw(db, project.id, [a1, a2])
    db.execute(
        update(Mask)
        .where(Mask.author_id == a2.id, Mask.id % 9 == 0)
        .values(deleted_at=None, seconds_spent=0.5)
        .execution_options(synchronize_session=False)
    )
    db.execute(delete(Mask).where(Mask.author_id == a1.id))  # a1 has no mask left: out of every bucket
    db.commit()
    assert_timeline_is_raw(db, project.id, [a1, a2])
    assert served_timeline(db, project.id, "hour", a1.id) == []

    incremental = snapshot(db)
    rebuild_rollups(db, project.id)
    db.commit()
    assert snapshot(db) == incremental


def test_timeline_pages_newest_first_buckets_oldest_first(db, project, images, make_user):
    a1 = make_user(Role.annotator, "w1")
    db.execute(insert(Mask).values(bulk_rows(project, images, 40, at(1, 0), a1, MaskSource.manual)))  # 7 min apart
    db.commit()
    everything = served_timeline(db, project.id, "hour")
    assert len(everything) == 5  # 40 masks * 7 min = 4h40m: hours 00..04
    page = service.timeline(db, service.Scope(project.id), "hour", limit=2)
    assert [r.bucket for r in page] == ["2026-01-01T03:00:00", "2026-01-01T04:00:00"]
    older = service.timeline(db, service.Scope(project.id), "hour", before=page[0].bucket, limit=2)
    assert [r.bucket for r in older] == ["2026-01-01T01:00:00", "2026-01-01T02:00:00"]
    mine = service.timeline(db, service.Scope(project.id, a1.id), "day", before="2026-01-01T00:00:00")
    assert mine == []


def test_review_rollup_follows_reviews_and_their_masks(db, project, images, make_user):
    """review_totals equals the counts over mask_reviews after review inserts, a changed decision and IoU,
    a reviewer's deletion (SET NULL), a mask's deletion (the review cascades) and a bulk insert."""
    r1, r2 = make_user(Role.annotator, "v1"), make_user(Role.annotator, "v2")
    masks = [
        new_mask(project, images[i % 3], None, None, None, MaskSource.auto, Stage.fully_automatic) for i in range(8)
    ]
    db.add_all(masks)
    db.commit()

    def review(mask, reviewer, decision, iou):
        return MaskReview(mask_id=mask.id, project_id=project.id, reviewer_id=reviewer.id, decision=decision, iou=iou)

    db.add_all(
        [
            review(masks[0], r1, ReviewDecision.accept, 1.0),
            review(masks[1], r1, ReviewDecision.fix, 0.95),
            review(masks[2], r1, ReviewDecision.fix, 0.5),
            review(masks[3], r2, ReviewDecision.reject, None),
        ]
    )
    db.commit()

    def raw(reviewer_id=None):
        rows = db.scalars(select(MaskReview).where(MaskReview.project_id == project.id)).all()
        rows = [r for r in rows if reviewer_id is None or r.reviewer_id == reviewer_id]
        return (
            len(rows),
            sum(r.decision == ReviewDecision.accept for r in rows),
            sum(r.decision == ReviewDecision.fix for r in rows),
            sum(r.decision == ReviewDecision.reject for r in rows),
            sum(r.iou is not None and r.iou > service.REVIEW_IOU_THRESHOLD for r in rows),
        )

    def served(reviewer_id=None):
        out = service.review_stats(db, service.Scope(project.id, reviewer_id))
        return (out.reviewed, out.accepted, out.fixed, out.rejected, out.within_threshold)

    def check():
        db.expire_all()
        for who in (None, r1.id, r2.id):
            assert served(who) == raw(who)

    check()
    assert served() == (4, 1, 2, 1, 2)
    db.execute(
        update(MaskReview)
        .where(MaskReview.mask_id == masks[2].id)
        .values(iou=0.99)
        .execution_options(synchronize_session=False)
    )
    db.execute(
        update(MaskReview)
        .where(MaskReview.mask_id == masks[3].id)
        .values(decision=ReviewDecision.fix, iou=0.7, reviewer_id=r1.id)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    check()
    db.execute(
        insert(MaskReview).values(
            [
                {"mask_id": m.id, "project_id": project.id, "reviewer_id": r2.id, "decision": "accept", "iou": 1.0}
                for m in masks[4:]
            ]
        )
    )
    db.commit()
    check()
    db.execute(delete(Mask).where(Mask.id == masks[0].id))  # its review cascades
    db.delete(db.get(User, r2.id))  # reviewer_id SET NULL
    db.commit()
    check()
    assert served() == (7, 4, 3, 0, 6)
    incremental = snapshot(db)
    rebuild_rollups(db, project.id)
    db.commit()
    assert snapshot(db) == incremental


def test_rollups_follow_the_mask_writers_bulk_insert(db, project, images, make_user):
    """The automatic stage's path: `insert_masks` (one multi-row INSERT per image), then a soft delete of
    some and a review; every rollup equals its rebuild and the timeline the raw rows."""
    a1 = make_user(Role.annotator, "b1")
    pixels = np.zeros((4, 4), dtype=np.uint8)
    pixels[1:3, 1:3] = 1
    for image in images:
        insert_masks(
            db,
            image,
            [
                NewMask(
                    mask=pixels, source=MaskSource.auto, stage=Stage.fully_automatic, provenance=provenance.auto({})
                )
                for _ in range(50)
            ]
            + [
                NewMask(
                    mask=pixels,
                    source=MaskSource.manual,
                    stage=Stage.assisted_manual,
                    provenance=provenance.annotated(None),
                    author_id=a1.id,
                    seconds_spent=2.5,
                    clicks=2,
                )
            ],
        )
        db.commit()
    assert db.scalar(text("SELECT SUM(masks) FROM timeline_hours")) == 153
    db.execute(
        update(Mask)
        .where(Mask.source == MaskSource.auto, Mask.id % 4 == 0)
        .values(deleted_at=at(6, 0))
        .execution_options(synchronize_session=False)
    )
    db.commit()
    assert_timeline_is_raw(db, project.id, [a1])
    incremental = snapshot(db)
    rebuild_rollups(db, project.id)
    db.commit()
    assert snapshot(db) == incremental


def test_migration_0016_builds_its_rollups_from_the_masks_already_there(empty_database_url):
    """A database with masks before 0016 gets the histograms and seconds values its rows imply."""
    upgrade(empty_database_url, "0015")
    engine = make_engine(empty_database_url)
    try:
        with Session(engine) as db:
            a1 = User(username="m1", password_hash="x", role=Role.annotator)
            db.add(a1)
            db.flush()
            project = Project(name="p", created_by=a1.id)
            db.add(project)
            db.flush()
            images = [
                Image(project_id=project.id, file_name=f"{i}", storage_key=f"{i}", sha256=f"{i:064d}", width=4,
                      height=4, size_bytes=1)
                for i in range(3)
            ]  # fmt: skip
            db.add_all(images)
            db.flush()
            db.execute(insert(Mask).values(bulk_rows(project, images, 40, at(1, 0), a1, MaskSource.manual)))
            db.execute(insert(Mask).values(bulk_rows(project, images[:1], 15, at(2, 0))))
            db.commit()
            project_id, author_id = project.id, a1.id
        upgrade(empty_database_url)
        with Session(engine) as db:
            migrated = snapshot(db)
            assert sum(r[2] for r in migrated["image_mask_histogram"]) == 3
            assert served_figures(db, project_id) == raw_figures(db, project_id)
            assert served_figures(db, project_id, author_id) == raw_figures(db, project_id, author_id)
            rebuild_rollups(db, project_id)
            db.commit()
            assert snapshot(db) == migrated
    finally:
        engine.dispose()
