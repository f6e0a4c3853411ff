"""POST/GET /api/users: only admins create users; managers may list them (to add members)."""

from __future__ import annotations

from backend.tables import Role
from tests.backend.conftest import TEST_PASSWORD


def test_admin_creates_a_user_who_can_then_log_in(client, admin_headers):
    response = client.post(
        "/api/users", json={"username": "bob", "password": "s3cret-pass", "role": "ml_engineer"}, headers=admin_headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["role"] == "ml_engineer"
    assert "password" not in response.text
    login = client.post("/api/auth/token", data={"username": "bob", "password": "s3cret-pass"})
    assert login.status_code == 200


def test_duplicate_username_is_409(client, admin_headers, make_user):
    make_user(Role.annotator, "bob")
    response = client.post("/api/users", json={"username": "bob", "password": "s3cret-pass"}, headers=admin_headers)
    assert response.status_code == 409
    assert "bob" in response.json()["detail"]


def test_bad_user_input_is_422(client, admin_headers):
    for body in (
        {"username": "bob", "password": "short"},
        {"username": "bob", "password": "s3cret-pass", "role": "superuser"},
        {"username": "", "password": "s3cret-pass"},
        {"username": "has space", "password": "s3cret-pass"},
        {"username": "bob", "password": "x" * 73},
    ):
        assert client.post("/api/users", json=body, headers=admin_headers).status_code == 422, body


def test_only_admins_create_users(client, make_user, login):
    for role in (Role.manager, Role.annotator, Role.ml_engineer):
        headers = login(make_user(role))
        response = client.post(
            "/api/users", json={"username": f"x{role.value}", "password": TEST_PASSWORD}, headers=headers
        )
        assert response.status_code == 403, role
    assert client.post("/api/users", json={"username": "anon", "password": TEST_PASSWORD}).status_code == 401


def test_managers_and_admins_list_users_annotators_do_not(client, make_user, login, admin_headers, manager_headers):
    make_user(Role.annotator, "ann")
    names = [u["username"] for u in client.get("/api/users", headers=manager_headers).json()]
    assert {"admin", "manager", "ann"} <= set(names)
    assert client.get("/api/users", headers=admin_headers).status_code == 200
    annotator = login(make_user(Role.annotator))
    assert client.get("/api/users", headers=annotator).status_code == 403
