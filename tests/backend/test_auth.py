"""Login, tokens and /api/users/me on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt

from backend.tables import Role
from tests.backend.conftest import TEST_PASSWORD


def test_login_returns_a_token_that_identifies_the_user(client, make_user):
    user = make_user(Role.annotator, "ann")
    response = client.post("/api/auth/token", data={"username": "ann", "password": TEST_PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    me = client.get("/api/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == user.id
    assert me.json()["username"] == "ann"
    assert me.json()["role"] == "annotator"
    assert "password_hash" not in me.json()


def test_wrong_password_unknown_user_and_inactive_user_are_401(client, make_user, db):
    user = make_user(Role.annotator, "ann")
    assert client.post("/api/auth/token", data={"username": "ann", "password": "nope"}).status_code == 401
    assert client.post("/api/auth/token", data={"username": "ghost", "password": TEST_PASSWORD}).status_code == 401
    user.is_active = False
    db.commit()
    response = client.post("/api/auth/token", data={"username": "ann", "password": TEST_PASSWORD})
    assert response.status_code == 401
    assert response.json()["detail"] == "incorrect username or password"


def test_login_form_missing_fields_is_422(client):
    assert client.post("/api/auth/token", data={"username": "x"}).status_code == 422


def test_me_requires_a_valid_token(client, make_user, settings, login, db):
    assert client.get("/api/users/me").status_code == 401
    assert client.get("/api/users/me", headers={"Authorization": "Bearer garbage"}).status_code == 401
    user = make_user()
    expired = jwt.encode(
        {"sub": str(user.id), "exp": datetime.now(UTC) - timedelta(minutes=1)}, settings.secret_key, algorithm="HS256"
    )
    assert client.get("/api/users/me", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    forged = jwt.encode(
        {"sub": str(user.id), "exp": datetime.now(UTC) + timedelta(minutes=5)},
        "another key of sufficient length, 32+ bytes",
        algorithm="HS256",
    )
    assert client.get("/api/users/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    headers = login(user)
    assert client.get("/api/users/me", headers=headers).status_code == 200
    user.is_active = False
    db.commit()
    assert client.get("/api/users/me", headers=headers).status_code == 401


def test_login_accepts_the_full_oauth2_password_form(client, make_user):
    """Swagger's "Authorize" sends grant_type, scope, client_id too; they are ignored."""
    make_user(Role.annotator, "ann")
    form = {"grant_type": "password", "username": "ann", "password": TEST_PASSWORD, "scope": "", "client_id": "x"}
    assert client.post("/api/auth/token", data=form).status_code == 200


def test_login_input_is_bounded(client):
    """A password bcrypt cannot compare (over 72 bytes) or an over-long name is a 422, never a 500."""
    for form in (
        {"username": "ann", "password": "é" * 40},
        {"username": "ann", "password": ""},
        {"username": "x" * 151, "password": TEST_PASSWORD},
        {"username": "", "password": TEST_PASSWORD},
    ):
        assert client.post("/api/auth/token", data=form).status_code == 422, form
