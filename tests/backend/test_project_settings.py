"""Project settings: one schema (backend/projects/settings.py) checked on create and PATCH, the only
way the product reads them, and what happens to rows stored before it existed (SQLite + PostgreSQL)."""

from __future__ import annotations

import pytest

from backend.projects.settings import GateSettings, ProjectSettings
from backend.stages.gates import DEFAULT_GATES
from backend.tables import Project, Role

INVALID = [
    ({"gates": "x"}, "gates"),
    ({"gates": ["a"]}, "gates"),
    ({"gates": {"semi_automatic": 5}}, "gates.semi_automatic"),
    ({"gates": {"semi_automatic": {"min_masks": "many"}}}, "gates.semi_automatic.min_masks"),
    ({"gates": {"semi_automatic": {"min_masks": -1}}}, "gates.semi_automatic.min_masks"),
    ({"gates": {"semi_automatic": {"min_done_share": 1.5}}}, "gates.semi_automatic.min_done_share"),
    ({"gates": {"semi_automatic": {"min_mask": 5}}}, "gates.semi_automatic.min_mask"),
    ({"gates": {"fully_automatic": {"min_detectors": 1}}}, "gates.fully_automatic.min_detectors"),
    ({"gates": {"assisted_manual": {}}}, "gates.assisted_manual"),
    ({"review_fraction": 3}, "review_fraction"),
    ({"review_fraction": "0.5"}, "review_fraction"),
    ({"review_seed": 1.5}, "review_seed"),
    ({"retrain_every_masks": -1}, "retrain_every_masks"),
    ({"auto_promote": "yes"}, "auto_promote"),
    ({"auto_promote": 1}, "auto_promote"),
    ({"retrain_params": {"steps": 0}}, "retrain_params.steps"),
    ({"retrain_params": {"stepz": 10}}, "retrain_params.stepz"),
    ({"k": 1}, "k"),
    ({"duplicate_iou": 0}, "duplicate_iou"),
    ({"duplicate_iou": 1.5}, "duplicate_iou"),
]
GATE_PAGES = ("gate", "dashboard", "dashboard/me")
# The three, a bad threshold, and keys of no schema at two depths.
STORED_BEFORE = [INVALID[i] for i in (0, 1, 2, 3, 6, 17)]


@pytest.mark.parametrize(("value", "where"), INVALID)
def test_invalid_settings_are_refused_on_create(client, manager_headers, admin_headers, value, where):
    """Before: stored (201), and then /gate, /dashboard, /dashboard/me and POST /stage answered 500."""
    response = client.post("/api/projects", json={"name": "x", "settings": value}, headers=manager_headers)
    assert response.status_code == 422, response.text
    assert f"settings.{where}:" in response.json()["detail"]
    assert client.get("/api/projects", headers=admin_headers).json() == []


@pytest.mark.parametrize(("value", "where"), INVALID)
def test_invalid_settings_are_refused_on_patch_and_nothing_changes(client, project, manager_headers, value, where):
    url = f"/api/projects/{project.id}"
    before = client.get(url, headers=manager_headers).json()
    response = client.patch(url, json={"name": "renamed", "settings": value}, headers=manager_headers)
    assert response.status_code == 422, response.text
    assert f"settings.{where}:" in response.json()["detail"]
    assert client.get(url, headers=manager_headers).json() == before


def test_patch_is_a_partial_update_and_settings_a_merge_patch(client, project, manager_headers):
    url = f"/api/projects/{project.id}"
    response = client.patch(
        url,
        json={"settings": {"gates": {"semi_automatic": {"min_masks": 5}}, "review_fraction": 0.5}},
        headers=manager_headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "Test project" and body["description"] == "made by the `project` fixture"
    assert body["settings"]["gates"]["semi_automatic"]["min_masks"] == 5
    assert body["settings"]["gates"]["semi_automatic"]["min_detectors"] == 1  # default
    assert body["settings"]["review_fraction"] == 0.5
    # Merge: a later patch changes what it names (one threshold of a gate) and keeps the rest.
    body = client.patch(
        url,
        json={
            "name": "Renamed",
            "settings": {"gates": {"semi_automatic": {"min_detectors": 0}}, "review_fraction": 0.1},
        },
        headers=manager_headers,
    ).json()
    assert body["name"] == "Renamed"
    assert body["settings"]["gates"]["semi_automatic"] == {
        "min_masks": 5,
        "min_done_share": 0.0,
        "min_trained_models": 0,
        "min_detectors": 0,
    }
    assert body["settings"]["review_fraction"] == 0.1
    assert client.patch(url, json={"description": "new"}, headers=manager_headers).json()["description"] == "new"
    assert client.patch(url, json={"settings": {"review_fraction": None}}, headers=manager_headers).status_code == 422
    # Only what was set is stored, so the code's defaults keep applying to the rest.
    stored = client.app.state.session_factory().get(Project, project.id).settings
    assert stored == {"gates": {"semi_automatic": {"min_masks": 5, "min_detectors": 0}}, "review_fraction": 0.1}
    # The gate reads its thresholds from there.
    gate = client.get(f"/api/projects/{project.id}/gate", headers=manager_headers).json()
    assert {c["key"]: c["required"] for c in gate["conditions"]}["min_masks"] == 5


def test_patch_needs_the_role_manager_in_the_project(client, project, manager_headers, make_user, login, admin_headers):
    url = f"/api/projects/{project.id}"
    for role in (Role.annotator, Role.ml_engineer):
        user = make_user(role)
        client.post(f"/api/projects/{project.id}/members", json={"user_id": user.id}, headers=manager_headers)
        assert client.patch(url, json={"name": "x"}, headers=login(user)).status_code == 403
    # A global manager who is an annotator in this project is an annotator here.
    narrowed = make_user(Role.manager)
    client.post(
        f"/api/projects/{project.id}/members",
        json={"user_id": narrowed.id, "role_in_project": "annotator"},
        headers=manager_headers,
    )
    assert client.patch(url, json={"name": "x"}, headers=login(narrowed)).status_code == 403
    assert client.patch(url, json={"name": "x"}, headers=login(make_user(Role.manager))).status_code == 404
    assert client.patch(url, json={"name": "by admin"}, headers=admin_headers).status_code == 200
    assert client.patch(url, json={"name": ""}, headers=admin_headers).status_code == 422
    assert client.patch(url, json={"stage": "done"}, headers=admin_headers).status_code == 422  # stages: POST /stage
    assert client.patch(url, json={"name": "a\x00b"}, headers=admin_headers).status_code == 422  # PostgreSQL: no NUL


@pytest.mark.parametrize(("value", "_"), STORED_BEFORE)
def test_rows_stored_before_the_schema_fall_back_to_defaults(client, db, project, manager_headers, value, _):
    """A previously stored invalid value cannot reach the code: the accessor drops the invalid key
    (its default applies) and every page that reads settings answers."""
    project.settings = value if "review_fraction" in value else {**value, "review_fraction": 0.25}
    db.commit()
    base = f"/api/projects/{project.id}"
    for page in GATE_PAGES:
        response = client.get(f"{base}/{page}", headers=manager_headers)
        assert response.status_code == 200, (page, response.text)
    moved = client.post(f"{base}/stage", json={"stage": "semi_automatic"}, headers=manager_headers)
    assert moved.status_code == 409 and "does not hold" in moved.json()["detail"], moved.text  # default: 1000 masks
    shown = client.get(base, headers=manager_headers).json()["settings"]
    if "review_fraction" not in value:
        assert shown["review_fraction"] == 0.25  # valid keys next to the invalid one are kept
    # The next PATCH stores the cleaned settings.
    assert client.patch(base, json={"settings": {"review_seed": 7}}, headers=manager_headers).status_code == 200
    db.expire_all()
    assert ProjectSettings.model_validate(db.get(Project, project.id).settings).review_seed == 7


def test_the_schema_has_a_threshold_for_every_gate_condition():
    for stage, conditions in DEFAULT_GATES.items():
        assert set(GateSettings.model_fields[stage.value].annotation.model_fields) == {c.key for c in conditions}
