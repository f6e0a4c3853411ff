"""Stages: every gate condition measured, and the one stage move (next stage only, through an open gate,
image statuses and locks reset, history kept), on SQLite and PostgreSQL; who may look and who may move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backend.stages import gates, service
from backend.tables import (
    DetectorVersion,
    Image,
    ImageStatus,
    Mask,
    MaskSource,
    ModelOrigin,
    ModelStatus,
    ModelVersion,
    Project,
    ProjectMember,
    Role,
    Stage,
)

OPEN_GATES = {  # every threshold at zero: each gate holds whatever the project holds
    "gates": {
        "semi_automatic": {"min_masks": 0, "min_done_share": 0, "min_trained_models": 0, "min_detectors": 0},
        "fully_automatic": {"min_masks": 0, "min_trained_models": 0},
        "done": {"min_done_share": 0},
    }
}


def _image(db, project: Project, n: int, status=ImageStatus.new, **values) -> Image:
    image = Image(
        project_id=project.id,
        file_name=f"img{n}.jpg",
        storage_key=f"k{n}",
        sha256=f"{n:064d}",
        width=4,
        height=4,
        size_bytes=10,
        status=status,
        **values,
    )
    db.add(image)
    db.flush()
    return image


def _mask(db, project: Project, image: Image, stage: Stage) -> None:
    db.add(
        Mask(
            image_id=image.id,
            project_id=project.id,
            rle={"size": [4, 4], "counts": "04"},
            bbox=[0, 0, 1, 1],
            area=1,
            source=MaskSource.manual,
            stage=stage,
            provenance={"origin": "manual"},
        )
    )


def test_stages_run_in_order_and_done_is_the_last():
    assert [gates.next_stage(stage) for stage in gates.ORDER] == [*gates.ORDER[1:], None]
    assert set(gates.ORDER) == set(Stage) and set(gates.DEFAULT_GATES) == set(gates.ORDER[1:])


def test_the_gate_measures_each_condition_now(db, project):
    gate = gates.evaluate(db, project)
    assert (gate.from_stage, gate.to_stage, gate.holds) == (Stage.assisted_manual, Stage.semi_automatic, False)
    assert {c.key: (c.required, c.actual, c.holds) for c in gate.conditions} == {
        "min_masks": (1000, 0, False),
        "min_done_share": (0.0, 0.0, True),
        "min_trained_models": (0, 0, True),
        "min_detectors": (1, 0, False),
    }

    done = _image(db, project, 1, ImageStatus.done)  # done in the current stage: its status says it
    earlier = _image(db, project, 2, stage_done={"assisted_manual": datetime.now(UTC).isoformat()})
    _image(db, project, 3, ImageStatus.in_progress)
    for image, stage in [(done, Stage.assisted_manual), (earlier, Stage.assisted_manual), (done, Stage.semi_automatic)]:
        _mask(db, project, image, stage)
    db.add_all(
        [
            ModelVersion(project_id=project.id, name="r1", architecture="vit_t", origin=ModelOrigin.trained),
            ModelVersion(
                project_id=project.id,
                name="r2",
                architecture="vit_t",
                origin=ModelOrigin.trained,
                status=ModelStatus.training,  # not ready: not counted
            ),
            DetectorVersion(project_id=project.id, name="d1", status=ModelStatus.ready),
            DetectorVersion(project_id=project.id, name="d2", status=ModelStatus.failed),
        ]
    )
    project.settings = {"gates": {"semi_automatic": {"min_masks": 2, "min_done_share": 0.5}}}
    db.commit()
    gate = gates.evaluate(db, project)
    assert {c.key: (c.required, c.actual) for c in gate.conditions} == {
        "min_masks": (2, 2),  # the semi-automatic mask is not the assisted-manual stage's
        "min_done_share": (0.5, pytest.approx(2 / 3)),
        "min_trained_models": (0, 1),
        "min_detectors": (1, 1),
    }
    assert gate.holds


def test_move_to_the_next_stage_through_an_open_gate(client, db, project, manager_headers, make_user, login):
    annotator, outsider = make_user(Role.annotator), make_user(Role.annotator)
    db.add(ProjectMember(project_id=project.id, user_id=annotator.id))
    finished = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    images = [
        _image(db, project, 1, ImageStatus.done, stage_done={"assisted_manual": finished}),
        _image(
            db,
            project,
            2,
            ImageStatus.in_progress,
            assignee_id=annotator.id,
            locked_until=datetime.now(UTC) + timedelta(minutes=5),
        ),
    ]
    db.commit()
    url = f"/api/projects/{project.id}/stage"

    skip = client.post(url, json={"stage": "fully_automatic"}, headers=manager_headers)
    assert skip.status_code == 409 and "the next stage is semi_automatic" in skip.json()["detail"]
    closed = client.post(url, json={"stage": "semi_automatic"}, headers=manager_headers)
    assert closed.status_code == 409
    assert "masks annotated in the assisted-manual stage: 0 < 1000" in closed.json()["detail"]
    assert "ready detector versions" in closed.json()["detail"]  # every missing condition is named
    assert client.post(url, json={"stage": "semi_automatic"}, headers=login(annotator)).status_code == 403
    assert client.post(url, json={"stage": "semi_automatic"}, headers=login(outsider)).status_code == 404
    assert client.get(f"/api/projects/{project.id}/gate", headers=login(annotator)).status_code == 200
    assert client.get(f"/api/projects/{project.id}/gate", headers=login(outsider)).status_code == 404
    db.refresh(project)
    assert project.stage == Stage.assisted_manual  # nothing moved

    project.settings = OPEN_GATES
    db.commit()
    assert client.get(f"/api/projects/{project.id}/gate", headers=manager_headers).json()["holds"] is True
    moved = client.post(url, json={"stage": "semi_automatic"}, headers=manager_headers)
    assert moved.status_code == 200, moved.text
    assert moved.json()["stage"] == "semi_automatic"
    gate = client.get(f"/api/projects/{project.id}/gate", headers=manager_headers).json()
    assert (gate["from_stage"], gate["to_stage"]) == ("semi_automatic", "fully_automatic")
    for image in images:
        db.refresh(image)
        assert (image.status, image.assignee_id, image.locked_until) == (ImageStatus.new, None, None)
    assert images[0].stage_done == {"assisted_manual": finished}  # what was finished stays finished


def test_a_done_project_has_no_next_stage(db, project):
    project.settings = OPEN_GATES
    db.commit()
    for stage in gates.ORDER[1:]:
        service.advance_stage(db, project, stage)
    assert project.stage == Stage.done
    gate = gates.evaluate(db, project)
    assert (gate.to_stage, gate.conditions, gate.holds) == (None, [], False)
    with pytest.raises(service.BadStageMove, match="none \\(done\\)"):
        service.advance_stage(db, project, Stage.assisted_manual)
