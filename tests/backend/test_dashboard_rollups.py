"""The dashboard rollups stay equal to a fresh recomputation from `masks` and `images` through every kind
of write (ORM insert/update, Core UPDATE as the review flow does, Core DELETE, image and user deletion
cascades, a rolled-back transaction, the stage move's bulk image update), on SQLite and PostgreSQL; and
`dataengine rebuild-rollups` repairs them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, text, update

from backend.cli import main
from backend.dashboard import service
from backend.dashboard.rollups import rebuild_rollups
from backend.stages import gates
from backend.stages import service as stages
from backend.tables import Image, ImageStatus, Mask, MaskSource, PrefillOutcome, Role, Stage, User

TABLES = {
    "mask_totals": "project_id, stage, source, author_key, masks, timed, seconds, clicked, clicks, "
    "prefill_kept, prefill_corrected, prefill_deleted",
    "mask_stats": "project_id, hour, stage, source, author_key, masks, timed, seconds, clicked, clicks, "
    "prefill_kept, prefill_corrected, prefill_deleted",
    "mask_seconds": "project_id, author_key, bucket, masks",
    "image_mask_counts": "project_id, image_id, author_key, masks",
    "image_mask_totals": "project_id, image_id, masks",
    "image_stats": "project_id, assignee_key, status, images, done_assisted_manual, done_semi_automatic, "
    "done_fully_automatic, done_done",
}
KEYS = {
    "mask_totals": 4,
    "mask_stats": 5,
    "mask_seconds": 3,
    "image_mask_counts": 3,
    "image_mask_totals": 2,
    "image_stats": 3,
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
    assert db.scalar(text("SELECT SUM(masks) FROM mask_stats")) == 5  # inserted live masks

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
    assert sum(r[5] for r in incremental["mask_stats"]) == 4  # live: masks 0, 1, 2, 5

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
