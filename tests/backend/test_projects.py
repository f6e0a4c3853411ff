"""Projects and members: who may create, who sees what (non-members get 404, never 403)."""

from __future__ import annotations

from backend.tables import Role


def test_manager_creates_a_project_and_is_its_member(client, manager, manager_headers):
    response = client.post(
        "/api/projects", json={"name": "Street scenes", "settings": {"review_fraction": 0.5}}, headers=manager_headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["stage"] == "assisted_manual"
    assert body["settings"]["review_fraction"] == 0.5 and body["settings"]["auto_promote"] is False  # + defaults
    assert body["image_count"] == 0
    assert body["created_by"] == manager.id
    members = client.get(f"/api/projects/{body['id']}/members", headers=manager_headers).json()
    assert [(m["user_id"], m["role_in_project"]) for m in members] == [(manager.id, "manager")]
    assert [p["id"] for p in client.get("/api/projects", headers=manager_headers).json()] == [body["id"]]


def test_annotator_and_ml_engineer_cannot_create_projects(client, make_user, login):
    for role in (Role.annotator, Role.ml_engineer):
        response = client.post("/api/projects", json={"name": "x"}, headers=login(make_user(role)))
        assert response.status_code == 403
        assert "requires role" in response.json()["detail"]


def test_bad_project_input_is_422(client, manager_headers):
    assert client.post("/api/projects", json={"name": ""}, headers=manager_headers).status_code == 422
    assert client.post("/api/projects", json={"name": "x", "settings": [1]}, headers=manager_headers).status_code == 422
    assert (
        client.post("/api/projects", json={"name": "x", "settings": {"k": 1}}, headers=manager_headers).status_code
        == 422
    )
    assert client.post("/api/projects", json={}, headers=manager_headers).status_code == 422


def test_non_members_get_404_for_everything_of_a_project(client, project, make_user, login):
    outsider = login(make_user(Role.manager, "other_manager"))
    assert client.get("/api/projects", headers=outsider).json() == []
    pid = project.id
    for method, path, kwargs in (
        ("get", f"/api/projects/{pid}", {}),
        ("patch", f"/api/projects/{pid}", {"json": {"name": "mine now"}}),
        ("get", f"/api/projects/{pid}/members", {}),
        ("post", f"/api/projects/{pid}/members", {"json": {"user_id": 1}}),
        ("delete", f"/api/projects/{pid}/members/1", {}),
        ("get", f"/api/projects/{pid}/images", {}),
        ("post", f"/api/projects/{pid}/images", {"files": {"files": ("a.jpg", b"x", "image/jpeg")}}),
    ):
        response = getattr(client, method)(path, headers=outsider, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["detail"] == f"project {pid} not found"


def test_unknown_project_is_404_and_bad_id_422(client, admin_headers):
    assert client.get("/api/projects/999999", headers=admin_headers).status_code == 404
    assert client.get("/api/projects/abc", headers=admin_headers).status_code == 422


def test_admin_sees_every_project(client, project, admin_headers):
    assert [p["id"] for p in client.get("/api/projects", headers=admin_headers).json()] == [project.id]
    assert client.get(f"/api/projects/{project.id}", headers=admin_headers).status_code == 200


def test_members_added_see_the_project_removed_ones_do_not(client, project, manager_headers, make_user, login):
    annotator = make_user(Role.annotator, "ann")
    headers = login(annotator)
    assert client.get(f"/api/projects/{project.id}", headers=headers).status_code == 404
    added = client.post(f"/api/projects/{project.id}/members", json={"user_id": annotator.id}, headers=manager_headers)
    assert added.status_code == 201, added.text
    assert added.json()["username"] == "ann"
    assert client.get(f"/api/projects/{project.id}", headers=headers).status_code == 200
    assert [p["id"] for p in client.get("/api/projects", headers=headers).json()] == [project.id]
    # a member annotator still may not manage members
    assert client.delete(f"/api/projects/{project.id}/members/{annotator.id}", headers=headers).status_code == 403
    removed = client.delete(f"/api/projects/{project.id}/members/{annotator.id}", headers=manager_headers)
    assert removed.status_code == 204
    assert client.get(f"/api/projects/{project.id}", headers=headers).status_code == 404


def test_member_errors(client, project, manager, manager_headers):
    url = f"/api/projects/{project.id}/members"
    assert client.post(url, json={"user_id": 999999}, headers=manager_headers).status_code == 404
    assert client.post(url, json={"user_id": manager.id}, headers=manager_headers).status_code == 409
    assert client.post(url, json={"user_id": "x"}, headers=manager_headers).status_code == 422
    assert (
        client.post(url, json={"user_id": manager.id, "role_in_project": "boss"}, headers=manager_headers).status_code
        == 422
    )
    assert client.delete(f"{url}/999999", headers=manager_headers).status_code == 404
