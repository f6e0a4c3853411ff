"""Accounts and tokens: changing and resetting passwords, deactivation, revocation (token version),
failed-login rate limits, usernames not told by timing, and job-events tickets instead of the bearer
token in the SSE URL. All through the HTTP API, on both databases."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from backend.core.config import Settings
from backend.core.security import hash_password
from backend.jobs import service as jobs
from backend.main import create_app
from backend.tables import Role, User
from backend.tables.enums import JobStatus
from tests.backend.celery_workers import redis_database
from tests.backend.conftest import TEST_PASSWORD

NEW_PASSWORD = "a brand new passphrase"
ACCENTS = "é" * 40  # 40 characters, 80 bytes: over bcrypt's 72


def _login(client, username: str, password: str):
    return client.post("/api/auth/token", data={"username": username, "password": password})


def _bearer(response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _me(client, headers) -> int:
    return client.get("/api/users/me", headers=headers).status_code


# --- changing one's own password ----------------------------------------------------------------


def test_changing_the_own_password_needs_the_current_one_and_revokes_old_tokens(client, make_user):
    make_user(Role.annotator, "ann")
    first, second = _bearer(_login(client, "ann", TEST_PASSWORD)), _bearer(_login(client, "ann", TEST_PASSWORD))

    wrong = client.post(
        "/api/users/me/password",
        headers=first,
        json={"current_password": "not it at all", "new_password": NEW_PASSWORD},
    )
    assert wrong.status_code == 400 and "current password" in wrong.json()["detail"]
    assert _me(client, first) == 200  # nothing changed

    changed = client.post(
        "/api/users/me/password", headers=first, json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert changed.status_code == 200, changed.text
    assert _me(client, first) == 401 and _me(client, second) == 401  # every earlier token is revoked
    assert _me(client, _bearer(changed)) == 200  # the answer carries a fresh one
    assert _login(client, "ann", TEST_PASSWORD).status_code == 401
    assert _login(client, "ann", NEW_PASSWORD).status_code == 200


def test_password_change_input_is_validated(client, make_user, login):
    headers = login(make_user(Role.annotator, "ann"))
    for body in (
        {"current_password": TEST_PASSWORD, "new_password": "short"},
        {"current_password": TEST_PASSWORD, "new_password": ACCENTS},
        {"current_password": ACCENTS, "new_password": NEW_PASSWORD},
        {"current_password": "", "new_password": NEW_PASSWORD},
        {"new_password": NEW_PASSWORD},
    ):
        response = client.post("/api/users/me/password", headers=headers, json=body)
        assert response.status_code == 422, (body, response.text)
    assert (
        client.post(
            "/api/users/me/password", json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD}
        ).status_code
        == 401
    )


# --- passwords are bounded by bytes, everywhere ---------------------------------------------------


def test_a_password_of_72_characters_but_80_bytes_is_422_not_500(client, admin_headers, make_user):
    created = client.post("/api/users", headers=admin_headers, json={"username": "accents", "password": ACCENTS})
    assert created.status_code == 422, created.text
    assert "72 bytes" in created.text
    user = make_user(Role.annotator, "ann")
    reset = client.post(f"/api/users/{user.id}/password", headers=admin_headers, json={"new_password": ACCENTS})
    assert reset.status_code == 422
    assert _login(client, "ann", ACCENTS).status_code == 422
    # 36 × "é" is 72 bytes: the longest such password, accepted and usable
    ok = client.post("/api/users", headers=admin_headers, json={"username": "accents", "password": "é" * 36})
    assert ok.status_code == 201, ok.text
    assert _login(client, "accents", "é" * 36).status_code == 200


# --- admin: reset, deactivate, activate, revoke ------------------------------------------------


def test_admin_resets_a_password_and_the_users_tokens_stop_working(client, admin_headers, make_user, login):
    user = make_user(Role.annotator, "ann")
    headers = login(user)
    response = client.post(f"/api/users/{user.id}/password", headers=admin_headers, json={"new_password": NEW_PASSWORD})
    assert response.status_code == 204, response.text
    assert _me(client, headers) == 401
    assert _login(client, "ann", NEW_PASSWORD).status_code == 200
    assert _me(client, admin_headers) == 200  # the admin's own session is untouched
    missing = client.post("/api/users/999999/password", headers=admin_headers, json={"new_password": NEW_PASSWORD})
    assert missing.status_code == 404


def test_deactivate_and_activate(client, admin, admin_headers, make_user, login):
    user = make_user(Role.annotator, "ann")
    headers = login(user)
    response = client.patch(f"/api/users/{user.id}", headers=admin_headers, json={"is_active": False})
    assert response.status_code == 200 and response.json()["is_active"] is False
    assert _me(client, headers) == 401
    assert _login(client, "ann", TEST_PASSWORD).status_code == 401

    response = client.patch(f"/api/users/{user.id}", headers=admin_headers, json={"is_active": True})
    assert response.status_code == 200 and response.json()["is_active"] is True
    assert _me(client, headers) == 401  # reactivation does not bring the old sessions back
    assert _login(client, "ann", TEST_PASSWORD).status_code == 200

    own = client.patch(f"/api/users/{admin.id}", headers=admin_headers, json={"is_active": False})
    assert own.status_code == 409 and "own account" in own.json()["detail"]
    assert client.patch("/api/users/999999", headers=admin_headers, json={"is_active": False}).status_code == 404
    unchanged = client.patch(f"/api/users/{user.id}", headers=admin_headers, json={})
    assert unchanged.status_code == 200 and unchanged.json()["is_active"] is True
    assert client.patch(f"/api/users/{user.id}", headers=admin_headers, json={"is_active": "maybe"}).status_code == 422


def test_only_admins_manage_other_accounts(client, make_user, login):
    target = make_user(Role.annotator, "target")
    for role in (Role.manager, Role.annotator, Role.ml_engineer):
        headers = login(make_user(role))
        for method, path, body in (
            ("POST", f"/api/users/{target.id}/password", {"new_password": NEW_PASSWORD}),
            ("PATCH", f"/api/users/{target.id}", {"is_active": False}),
            ("POST", f"/api/users/{target.id}/revoke-tokens", None),
            ("PATCH", "/api/users/999999", {"is_active": False}),  # 403, not 404: ids are not told
        ):
            assert client.request(method, path, headers=headers, json=body).status_code == 403, (role, path)
    assert client.patch(f"/api/users/{target.id}", json={"is_active": False}).status_code == 401
    assert _login(client, "target", TEST_PASSWORD).status_code == 200


def test_log_out_everywhere(client, admin_headers, make_user, login):
    make_user(Role.annotator, "ann")
    first, second = _bearer(_login(client, "ann", TEST_PASSWORD)), _bearer(_login(client, "ann", TEST_PASSWORD))
    assert client.post("/api/users/me/revoke-tokens", headers=first).status_code == 204
    assert _me(client, first) == 401 and _me(client, second) == 401
    fresh = _bearer(_login(client, "ann", TEST_PASSWORD))
    assert _me(client, fresh) == 200

    other = make_user(Role.manager, "mgr")
    other_headers = login(other)
    assert client.post(f"/api/users/{other.id}/revoke-tokens", headers=admin_headers).status_code == 204
    assert _me(client, other_headers) == 401
    assert _me(client, fresh) == 200


def test_a_token_without_a_version_or_purpose_is_refused(client, make_user, settings):
    """Tokens minted before token versions existed carry neither claim: refused, users log in again."""
    user = make_user()
    legacy = jwt.encode(
        {"sub": str(user.id), "exp": datetime.now(UTC) + timedelta(minutes=5)}, settings.secret_key, algorithm="HS256"
    )
    assert _me(client, {"Authorization": f"Bearer {legacy}"}) == 401


# --- failed-login rate limits -------------------------------------------------------------------


def test_wrong_passwords_are_rate_limited_per_username(client, make_user):
    """Before: 140 of 140 wrong passwords were answered 401. The default allows 10 failures per 5 minutes."""
    make_user(Role.annotator, "ann")
    make_user(Role.annotator, "bob")
    codes = [_login(client, "ann", f"guess number {i}").status_code for i in range(15)]
    assert codes == [401] * 10 + [429] * 5
    limited = _login(client, "ann", TEST_PASSWORD)  # even the right password, until the window moves on
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 300
    assert "too many failed logins" in limited.json()["detail"]
    assert _login(client, "bob", TEST_PASSWORD).status_code == 200  # other accounts are not locked


def test_successful_logins_do_not_count(client, make_user, settings):
    settings.login_failures_per_username = "3/minute"
    make_user(Role.annotator, "ann")
    assert all(_login(client, "ann", TEST_PASSWORD).status_code == 200 for _ in range(6))


def test_failures_are_rate_limited_per_client_address(client, make_user, settings):
    """Trying one password on many accounts from one address stops too."""
    settings.login_failures_per_address = "5/minute"
    make_user(Role.annotator, "ann")
    codes = [_login(client, f"user{i}", "Winter2026!").status_code for i in range(7)]
    assert codes == [401] * 5 + [429] * 2
    assert _login(client, "ann", TEST_PASSWORD).status_code == 429


def test_wrong_current_passwords_count_as_failed_logins(client, make_user, login, settings):
    settings.login_failures_per_username = "3/minute"
    headers = login(make_user(Role.annotator, "ann"))
    body = {"current_password": "a wrong guess", "new_password": NEW_PASSWORD}
    codes = [client.post("/api/users/me/password", headers=headers, json=body).status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]


@pytest.mark.redis
def test_api_workers_share_the_counts_in_redis(settings, make_user):
    """Production runs several API processes; with the counts in Redis a guesser cannot spread their
    attempts over them. (Two apps here stand for two uvicorn workers.)"""
    import redis

    url = redis_database(14)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as error:
        pytest.skip(f"Redis at {url} unreachable: {error}")
    assert Settings(broker_url=url).rate_limit_storage_url == url  # the broker's Redis by default
    settings.rate_limit_storage_url = url
    settings.login_failures_per_username, settings.login_failures_per_address = "4/minute", "1000/minute"
    username = f"user-{uuid.uuid4().hex}"  # Redis outlives the test: a name no other run uses
    make_user(Role.annotator, username)
    apps = [create_app(settings) for _ in range(2)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        codes = [_login(client, username, "wrong").status_code for client in (first, second) * 3]
    assert codes == [401] * 4 + [429] * 2
    for app in apps:
        app.state.engine.dispose()


def test_a_bad_rate_setting_is_refused_at_startup(settings):
    with pytest.raises(ValueError, match="rate limit"):
        Settings(login_failures_per_username="many")


# --- timing does not tell which usernames exist ----------------------------------------------------


def test_unknown_usernames_take_as_long_as_wrong_passwords(client, db, settings):
    """Before: 4 ms for an unknown name, 362 ms for a wrong password (bcrypt ran only for known users).
    Now a dummy hash of the same cost is checked, so both take one bcrypt run."""
    settings.bcrypt_rounds = 10
    settings.login_failures_per_username = settings.login_failures_per_address = "100/minute"
    db.add(User(username="ann", password_hash=hash_password(TEST_PASSWORD, 10), role=Role.annotator))
    db.add(User(username="gone", password_hash=hash_password(TEST_PASSWORD, 10), role=Role.annotator, is_active=False))
    db.commit()

    def fastest_seconds(username: str) -> float:
        """The quickest of several tries: other load on the machine only ever adds time."""
        times = []
        for _ in range(7):
            start = time.perf_counter()
            assert _login(client, username, "wrong password").status_code == 401
            times.append(time.perf_counter() - start)
        return min(times)

    fastest_seconds("nobody")  # warm-up (builds the dummy hash once)
    known, unknown, inactive = fastest_seconds("ann"), fastest_seconds("nobody"), fastest_seconds("gone")
    # Before the fix the unknown name was ~100 times faster; one bcrypt run each now.
    assert unknown > 0.3 * known and inactive > 0.3 * known, (known, unknown, inactive)


# --- job-events tickets instead of the bearer token in the URL ---------------------------------------


def _finished_job(db, project_id: int, user_id: int):
    job = jobs.create_job(db, "embed", project_id, user_id)
    job.status = JobStatus.succeeded
    db.commit()
    return job


def _events(client, job_id: int, **kwargs) -> int:
    with client.stream("GET", f"/api/jobs/{job_id}/events", **kwargs) as response:
        if response.status_code == 200:
            assert "event: end" in response.read().decode()
        return response.status_code


def test_the_event_stream_opens_with_a_ticket_for_that_job_only(client, db, project, manager, manager_headers):
    job, other = _finished_job(db, project.id, manager.id), _finished_job(db, project.id, manager.id)
    response = client.post(f"/api/jobs/{job.id}/events/ticket", headers=manager_headers)
    assert response.status_code == 200, response.text
    ticket = response.json()["ticket"]
    assert response.json()["expires_in"] == 60

    assert _events(client, job.id, params={"ticket": ticket}) == 200
    assert _events(client, job.id, headers=manager_headers) == 200  # the header still works
    assert _events(client, other.id, params={"ticket": ticket}) == 401  # only for its own job
    bearer = manager_headers["Authorization"].split()[1]
    assert _events(client, job.id, params={"access_token": bearer}) == 401  # no token in the URL any more
    assert _events(client, job.id, params={"ticket": bearer}) == 401  # an access token is not a ticket
    assert _me(client, {"Authorization": f"Bearer {ticket}"}) == 401  # a ticket is not an access token
    assert _events(client, job.id, headers={"Authorization": f"Bearer {ticket}"}) == 401
    assert _events(client, job.id) == 401


def test_tickets_expire_are_revoked_and_need_membership(
    client, db, settings, project, manager, manager_headers, make_user, login
):
    job = _finished_job(db, project.id, manager.id)
    expired = jwt.encode(
        {
            "sub": str(manager.id),
            "ver": 0,
            "purpose": "job-events",
            "job": job.id,
            "exp": datetime.now(UTC) - timedelta(seconds=1),
        },
        settings.secret_key,
        algorithm="HS256",
    )
    assert _events(client, job.id, params={"ticket": expired}) == 401

    outsider = login(make_user(Role.manager))
    assert client.post(f"/api/jobs/{job.id}/events/ticket", headers=outsider).status_code == 404
    assert client.post(f"/api/jobs/{job.id}/events/ticket").status_code == 401

    ticket = client.post(f"/api/jobs/{job.id}/events/ticket", headers=manager_headers).json()["ticket"]
    assert client.post("/api/users/me/revoke-tokens", headers=manager_headers).status_code == 204
    assert _events(client, job.id, params={"ticket": ticket}) == 401
