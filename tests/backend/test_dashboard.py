"""Every dashboard figure against a hand-built project whose numbers are worked out by hand below,
on SQLite and PostgreSQL; who sees which scope; stage gates and the stage move; CSV tables.

The fixture (`seeded`), live masks only unless said:
  a1 (annotator): 4 manual masks on img1, seconds 10/20/30/40, clicks 1/2/3/4, at 10:05 10:20 11:10 11:50
  a2 (annotator): 2 manual masks on img2, seconds 5/15, clicks 2/2, at 10:30 and the next day 09:00
  deleted: one a1 manual mask (1000 s, 50 clicks) on img3, one auto mask (prefill deleted) on img4
  detector mask on img3 (semi-automatic stage, prefill kept), two auto masks on img4 (one corrected)
  img5 has no mask. Images: img1 done (a1), img2 done (a2), img3 in progress (a1), img4 new, img5 skipped.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from backend.dashboard import service
from backend.tables import (
    Image,
    ImageStatus,
    Job,
    JobStatus,
    Mask,
    MaskReview,
    MaskSource,
    ModelOrigin,
    ModelStatus,
    ModelVersion,
    PrefillOutcome,
    ProjectMember,
    ReviewDecision,
    Role,
    Stage,
)

RLE = {"size": [4, 4], "counts": "04"}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def seeded(db, project, manager, make_user) -> dict[str, Any]:
    a1, a2, outsider = (
        make_user(Role.annotator, "a1"),
        make_user(Role.annotator, "a2"),
        make_user(Role.annotator, "outsider"),
    )
    db.add_all([ProjectMember(project_id=project.id, user_id=u.id) for u in (a1, a2)])
    specs = [
        ("img1", ImageStatus.done, a1, True),
        ("img2", ImageStatus.done, a2, True),
        ("img3", ImageStatus.in_progress, a1, False),
        ("img4", ImageStatus.new, None, False),
        ("img5", ImageStatus.skipped, None, False),
    ]
    images = {}
    for i, (name, status, assignee, done) in enumerate(specs):
        images[name] = Image(
            project_id=project.id,
            file_name=f"{name}.jpg",
            storage_key=f"k{i}",
            sha256=f"{i:064d}",
            width=4,
            height=4,
            size_bytes=10,
            status=status,
            assignee_id=assignee.id if assignee else None,
            stage_done={"assisted_manual": at(1, 12).isoformat()} if done else {},
        )
    db.add_all(images.values())
    db.flush()

    def mask(
        image: str,
        source=MaskSource.manual,
        stage=Stage.assisted_manual,
        author=None,
        seconds=None,
        clicks=None,
        created=at(3, 12),
        prefill=None,
        deleted=False,
    ) -> Mask:
        m = Mask(
            image_id=images[image].id,
            project_id=project.id,
            rle=RLE,
            bbox=[0, 0, 1, 1],
            area=1,
            source=source,
            stage=stage,
            author_id=author.id if author else None,
            seconds_spent=seconds,
            clicks=clicks,
            prefill_outcome=prefill,
            provenance={"origin": "annotated" if source == MaskSource.manual else source.value},
            created_at=created,
            updated_at=created,
            deleted_at=at(4, 0) if deleted else None,
        )
        db.add(m)
        return m

    for seconds, clicks, created in [
        (10, 1, at(1, 10, 5)),
        (20, 2, at(1, 10, 20)),
        (30, 3, at(1, 11, 10)),
        (40, 4, at(1, 11, 50)),
    ]:
        mask("img1", author=a1, seconds=seconds, clicks=clicks, created=created)
    mask("img2", author=a2, seconds=5, clicks=2, created=at(1, 10, 30))
    mask("img2", author=a2, seconds=15, clicks=2, created=at(2, 9))
    mask("img3", author=a1, seconds=1000, clicks=50, created=at(1, 10), deleted=True)
    detector = mask("img3", MaskSource.detector, Stage.semi_automatic, prefill=PrefillOutcome.kept)
    auto1 = mask("img4", MaskSource.auto, Stage.fully_automatic, prefill=PrefillOutcome.corrected)
    auto2 = mask("img4", MaskSource.auto, Stage.fully_automatic)
    gone = mask("img4", MaskSource.auto, Stage.fully_automatic, prefill=PrefillOutcome.deleted, deleted=True)
    db.flush()
    for m, decision, iou in [
        (auto1, ReviewDecision.fix, 0.95),
        (auto2, ReviewDecision.accept, 1.0),
        (detector, ReviewDecision.fix, 0.8),
        (gone, ReviewDecision.reject, None),
    ]:
        db.add(MaskReview(mask_id=m.id, project_id=project.id, reviewer_id=manager.id, decision=decision, iou=iou))

    base = ModelVersion(
        project_id=None, name="untrained vit_t", architecture="vit_t", origin=ModelOrigin.untrained, created_at=at(1, 0)
    )
    db.add(base)
    db.flush()
    r1 = ModelVersion(
        project_id=project.id,
        parent_id=base.id,
        name="round 1",
        architecture="vit_t",
        origin=ModelOrigin.trained,
        metrics={"miou": 0.7},
        created_at=at(2, 0),
    )
    r2 = ModelVersion(
        project_id=project.id,
        name="round 2",
        architecture="vit_t",
        origin=ModelOrigin.trained,
        status=ModelStatus.training,
        metrics={"miou": 0.75},
        created_at=at(3, 0),
    )
    db.add_all([r1, r2])
    project.active_model_version_id = base.id
    db.add_all(
        [
            Job(project_id=project.id, kind="embed", status=JobStatus.running, progress=0.5, message="3/6"),
            Job(project_id=project.id, kind="auto", status=JobStatus.succeeded, progress=1.0),
            Job(project_id=project.id, kind="train", status=JobStatus.failed, progress=0.2, error="boom"),
        ]
    )
    db.commit()
    return {"project": project, "a1": a1, "a2": a2, "outsider": outsider, "images": images, "models": (base, r1, r2)}


def test_manager_dashboard_every_figure(client, seeded, manager_headers):
    pid = seeded["project"].id
    response = client.get(f"/api/projects/{pid}/dashboard", headers=manager_headers)
    assert response.status_code == 200, response.text
    d = response.json()
    assert d["scope"] == "project"

    assert d["images"] == {
        "total": 5,
        "current_stage": "assisted_manual",
        "by_status": {"new": 1, "in_progress": 1, "done": 2, "skipped": 1},
        "done_per_stage": {"assisted_manual": 2, "semi_automatic": 0, "fully_automatic": 0, "done": 0},
    }
    masks = d["masks"]
    assert masks["total"] == 9
    assert masks["by_source"] == {"manual": 6, "detector": 1, "auto": 2, "imported": 0}
    assert masks["by_stage"] == {"assisted_manual": 6, "semi_automatic": 1, "fully_automatic": 2, "done": 0}
    assert sorted((r["stage"], r["source"], r["masks"]) for r in masks["by_stage_source"]) == [
        ("assisted_manual", "manual", 6),
        ("fully_automatic", "auto", 2),
        ("semi_automatic", "detector", 1),
    ]
    assert masks["per_image_mean"] == pytest.approx(9 / 5)
    assert [(b["low"], b["high"], b["images"]) for b in masks["per_image_histogram"]] == [
        (0, 0, 1),
        (1, 9, 4),
        (10, 24, 0),
        (25, 49, 0),
        (50, 99, 0),
        (100, 199, 0),
        (200, None, 0),
    ]

    timing = d["timing"]
    assert timing["timed_masks"] == 6 and timing["total_seconds"] == pytest.approx(120)
    assert timing["seconds_per_mask_mean"] == pytest.approx(20)
    assert timing["seconds_per_mask_median"] == pytest.approx(17.5)  # 5 10 [15 20] 30 40
    assert timing["seconds_per_mask_p90"] == pytest.approx(35)  # position 4.5: between 30 and 40
    assert timing["masks_per_hour"] == pytest.approx(180)  # 6 masks in 120 s
    assert timing["clicks_per_mask"] == pytest.approx(14 / 6)

    assert d["prefill"] == {"kept": 1, "corrected": 1, "deleted": 1}
    assert d["review"] == {
        "reviewed": 4,
        "accepted": 1,
        "fixed": 2,
        "rejected": 1,
        "iou_threshold": 0.9,
        "within_threshold": 2,
        "share_within": 0.5,
    }

    base, r1, r2 = seeded["models"]
    assert [(m["id"], m["round"], m["origin"], m["status"], m["active"], m["metrics"]) for m in d["models"]] == [
        (base.id, 1, "untrained", "ready", True, {}),
        (r1.id, 2, "trained", "ready", False, {"miou": 0.7}),
        (r2.id, 3, "trained", "training", False, {"miou": 0.75}),
    ]

    assert [(j["kind"], j["status"], j["progress"]) for j in d["jobs"]["active"]] == [("embed", "running", 0.5)]
    assert [(j["kind"], j["status"]) for j in d["jobs"]["recent"]] == [("train", "failed"), ("auto", "succeeded")]

    gate = d["gate"]
    assert (gate["from_stage"], gate["to_stage"], gate["holds"]) == ("assisted_manual", "semi_automatic", False)
    assert {c["key"]: (c["required"], c["actual"], c["holds"]) for c in gate["conditions"]} == {
        "min_masks": (1000, 6, False),
        "min_done_share": (0.0, 0.4, True),
        "min_trained_models": (0, 1, True),
        "min_detectors": (1, 0, False),
    }


def test_annotators_table(client, seeded, manager_headers):
    pid, a1, a2 = seeded["project"].id, seeded["a1"], seeded["a2"]
    rows = client.get(f"/api/projects/{pid}/dashboard/annotators", headers=manager_headers).json()
    assert [r["username"] for r in rows] == ["a1", "a2"]
    r1, r2 = rows
    assert (r1["user_id"], r1["masks"], r1["images_done"], r1["timed_masks"], r1["total_seconds"]) == (
        a1.id,
        4,
        1,
        4,
        100,
    )
    assert r1["seconds_per_mask_median"] == pytest.approx(25) and r1["seconds_per_mask_p90"] == pytest.approx(37)
    assert r1["masks_per_hour"] == pytest.approx(144) and r1["clicks_per_mask"] == pytest.approx(2.5)
    assert r1["first_mask_at"].startswith("2026-01-01T10:05") and r1["last_mask_at"].startswith("2026-01-01T11:50")
    assert (r2["user_id"], r2["masks"], r2["images_done"], r2["total_seconds"]) == (a2.id, 2, 1, 20)
    assert r2["seconds_per_mask_median"] == pytest.approx(10) and r2["seconds_per_mask_p90"] == pytest.approx(14)
    assert r2["masks_per_hour"] == pytest.approx(360) and r2["clicks_per_mask"] == pytest.approx(2)


def test_timeline_by_hour_and_day(client, seeded, manager_headers):
    pid = seeded["project"].id
    hours = client.get(f"/api/projects/{pid}/dashboard/timeline?bucket=hour", headers=manager_headers).json()
    assert [
        (r["bucket"], r["masks"], r["manual_masks"], r["timed_masks"], r["total_seconds"], r["annotators"])
        for r in hours
    ] == [
        ("2026-01-01T10:00:00", 3, 3, 3, 35, 2),
        ("2026-01-01T11:00:00", 2, 2, 2, 70, 1),
        ("2026-01-02T09:00:00", 1, 1, 1, 15, 1),
        ("2026-01-03T12:00:00", 3, 0, 0, 0, 0),
    ]
    assert hours[0]["masks_per_hour"] == pytest.approx(3 * 3600 / 35) and hours[3]["masks_per_hour"] is None
    days = client.get(f"/api/projects/{pid}/dashboard/timeline?bucket=day", headers=manager_headers).json()
    assert [(r["bucket"], r["masks"], r["total_seconds"], r["annotators"]) for r in days] == [
        ("2026-01-01T00:00:00", 5, 105, 2),
        ("2026-01-02T00:00:00", 1, 15, 1),
        ("2026-01-03T00:00:00", 3, 0, 0),
    ]
    assert client.get(f"/api/projects/{pid}/dashboard/timeline?bucket=week", headers=manager_headers).status_code == 422


def test_timeline_pages(client, seeded, manager_headers):
    """The newest `limit` buckets before `before`, oldest first: the previous page starts at `before`."""
    url = f"/api/projects/{seeded['project'].id}/dashboard/timeline"
    page = client.get(f"{url}?bucket=hour&limit=2", headers=manager_headers).json()
    assert [r["bucket"] for r in page] == ["2026-01-02T09:00:00", "2026-01-03T12:00:00"]
    older = client.get(f"{url}?bucket=hour&limit=2&before={page[0]['bucket']}", headers=manager_headers).json()
    assert [r["bucket"] for r in older] == ["2026-01-01T10:00:00", "2026-01-01T11:00:00"]
    days = client.get(f"{url}?bucket=day&before=2026-01-03T00:00:00", headers=manager_headers).json()
    assert [r["bucket"] for r in days] == ["2026-01-01T00:00:00", "2026-01-02T00:00:00"]
    for bad in ("limit=0", "limit=10001", "before=2026-01-01", "before=2026-01-01T10:30:00"):
        assert client.get(f"{url}?{bad}", headers=manager_headers).status_code == 422, bad


def test_csv_tables(client, seeded, manager_headers):
    pid = seeded["project"].id
    response = client.get(f"/api/projects/{pid}/dashboard/annotators?format=csv", headers=manager_headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["username"], r["masks"], r["seconds_per_mask_median"]) for r in rows] == [
        ("a1", "4", "25.0"),
        ("a2", "2", "10.0"),
    ]
    response = client.get(f"/api/projects/{pid}/dashboard/timeline?bucket=day&format=csv", headers=manager_headers)
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["bucket"], r["masks"], r["masks_per_hour"]) for r in rows][-1] == ("2026-01-03T00:00:00", "3", "")
    assert (
        client.get(f"/api/projects/{pid}/dashboard/annotators?format=xml", headers=manager_headers).status_code == 422
    )


def test_annotator_sees_only_their_own_figures(client, seeded, login):
    pid, a1 = seeded["project"].id, seeded["a1"]
    for path in ("dashboard", "dashboard/me"):
        d = client.get(f"/api/projects/{pid}/{path}", headers=login(a1)).json()
        assert d["scope"] == "me"
        assert d["images"]["total"] == 2 and d["images"]["by_status"]["done"] == 1  # img1 done, img3 in progress
        assert d["masks"]["total"] == 4 and d["masks"]["by_source"] == {
            "manual": 4,
            "detector": 0,
            "auto": 0,
            "imported": 0,
        }
        assert d["masks"]["per_image_mean"] == pytest.approx(4)
        assert d["timing"]["seconds_per_mask_median"] == pytest.approx(25)
        assert d["prefill"] == {"kept": 0, "corrected": 0, "deleted": 0} and d["review"]["reviewed"] == 0
    rows = client.get(f"/api/projects/{pid}/dashboard/annotators", headers=login(a1)).json()
    assert [r["username"] for r in rows] == ["a1"]
    hours = client.get(f"/api/projects/{pid}/dashboard/timeline", headers=login(a1)).json()
    assert sum(r["masks"] for r in hours) == 4


def test_admin_sees_everything_and_non_members_get_404(client, seeded, admin_headers, login):
    pid = seeded["project"].id
    assert client.get(f"/api/projects/{pid}/dashboard", headers=admin_headers).json()["masks"]["total"] == 9
    outsider = login(seeded["outsider"])
    for path in ("dashboard", "dashboard/me", "dashboard/annotators", "dashboard/timeline", "gate"):
        assert client.get(f"/api/projects/{pid}/{path}", headers=outsider).status_code == 404
    assert client.get("/api/projects/999999/dashboard", headers=admin_headers).status_code == 404
    assert client.get(f"/api/projects/{pid}/dashboard").status_code == 401


def test_empty_project_has_no_figures_rather_than_errors(client, project, manager_headers):
    d = client.get(f"/api/projects/{project.id}/dashboard", headers=manager_headers).json()
    assert d["masks"]["total"] == 0 and d["masks"]["per_image_mean"] is None
    assert d["timing"]["seconds_per_mask_median"] is None and d["timing"]["masks_per_hour"] is None
    assert d["review"]["share_within"] is None and d["models"] == [] and d["jobs"] == {"active": [], "recent": []}
    assert client.get(f"/api/projects/{project.id}/dashboard/annotators", headers=manager_headers).json() == []


def test_stage_move_needs_the_gate_and_resets_image_statuses(client, db, seeded, manager_headers, login):
    project = seeded["project"]
    pid = project.id
    response = client.post(f"/api/projects/{pid}/stage", json={"stage": "semi_automatic"}, headers=manager_headers)
    assert response.status_code == 409 and "6 < 1000" in response.json()["detail"]
    assert (
        client.post(
            f"/api/projects/{pid}/stage", json={"stage": "fully_automatic"}, headers=manager_headers
        ).status_code
        == 409
    )  # not the next stage
    assert (
        client.post(
            f"/api/projects/{pid}/stage", json={"stage": "semi_automatic"}, headers=login(seeded["a1"])
        ).status_code
        == 403
    )

    project.settings = {"gates": {"semi_automatic": {"min_masks": 6, "min_detectors": 0}}}
    db.commit()
    gate = client.get(f"/api/projects/{pid}/gate", headers=manager_headers).json()
    assert gate["holds"] is True
    response = client.post(f"/api/projects/{pid}/stage", json={"stage": "semi_automatic"}, headers=manager_headers)
    assert response.status_code == 200, response.text
    assert response.json()["stage"] == "semi_automatic"
    d = client.get(f"/api/projects/{pid}/dashboard", headers=manager_headers).json()
    assert d["images"]["by_status"] == {"new": 5, "in_progress": 0, "done": 0, "skipped": 0}
    assert d["images"]["done_per_stage"]["assisted_manual"] == 2  # history kept
    assert d["gate"]["to_stage"] == "fully_automatic"
    assert {c["key"]: c["actual"] for c in d["gate"]["conditions"]} == {"min_masks": 1, "min_trained_models": 1}


def test_a_bad_stored_gate_override_falls_back_to_its_default(client, db, project, manager_headers):
    """Settings are validated when set (tests/backend/test_project_settings.py); a value stored before
    that is ignored, so the dashboard still answers."""
    project.settings = {"gates": {"semi_automatic": {"min_masks": "many", "min_detectors": 0}}}
    db.commit()
    response = client.get(f"/api/projects/{project.id}/dashboard", headers=manager_headers)
    assert response.status_code == 200, response.text
    required = {c["key"]: c["required"] for c in response.json()["gate"]["conditions"]}
    assert required["min_masks"] == 1000 and required["min_detectors"] == 0


def test_percentiles_equal_percentile_cont(db, seeded, settings):
    """On PostgreSQL our rollup-located percentiles are exactly percentile_cont's, project-wide and per author."""
    if not settings.db_url.startswith("postgresql"):
        pytest.skip("percentile_cont is PostgreSQL's")
    pid = seeded["project"].id
    qs = [0.5, 0.9, 0.0, 1.0, 0.33]
    for author in (None, seeded["a1"].id, seeded["a2"].id):
        ours = service.percentiles(db, service.Scope(pid, author), qs)
        theirs = db.execute(
            text(
                "SELECT percentile_cont(ARRAY[0.5, 0.9, 0.0, 1.0, 0.33]) WITHIN GROUP (ORDER BY seconds_spent) "
                "FROM masks WHERE project_id = :p AND deleted_at IS NULL AND (CAST(:a AS INTEGER) IS NULL OR author_id = :a)"
            ),
            {"p": pid, "a": author},
        ).scalar_one()
        assert ours == pytest.approx(list(theirs))
