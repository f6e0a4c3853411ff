"""GET /api/projects/{id}/images/next: the image `claim next` would give, peeked without a lock (the
annotate page prefetches it); on SQLite and PostgreSQL."""

from __future__ import annotations

from backend.tables import Role
from tests.backend.jobs_helpers import upload


def test_peek_is_what_claim_next_gives_and_locks_nothing(client, project, manager_headers, make_user, login, data_root):
    first, second, third = upload(client, manager_headers, project.id, data_root, 3)
    annotator, other = make_user(Role.annotator), make_user(Role.annotator)
    for user in (annotator, other):
        client.post(f"/api/projects/{project.id}/members", json={"user_id": user.id}, headers=manager_headers)
    me, them = login(annotator), login(other)
    peek = f"/api/projects/{project.id}/images/next"

    assert client.get(peek, headers=me).json()["id"] == first
    assert client.get(peek, headers=them).json()["id"] == first  # nothing was locked by peeking
    claimed = client.post(f"/api/projects/{project.id}/claim", headers=me).json()
    assert claimed["id"] == first
    assert client.get(peek, headers=me).json()["id"] == first  # my own lock comes first, as for claim
    after = client.get(peek, headers=me, params={"exclude": first}).json()
    assert after["id"] == second and after["assignee_id"] is None
    assert client.get(peek, headers=them).json()["id"] == second  # my lock is not theirs to get

    client.post(f"/api/images/{third}/assign", json={"user_id": annotator.id}, headers=manager_headers)
    assert client.get(peek, headers=me, params={"exclude": first}).json()["id"] == third  # assigned to me first
    assert client.get(peek, headers=them).json()["id"] == second  # never one assigned to someone else
    client.post(f"/api/images/{first}/done", headers=me)
    assert client.post(f"/api/projects/{project.id}/claim", headers=me).json()["id"] == third

    assert client.post(f"/api/images/{third}/done", headers=me).status_code == 200
    assert client.post(f"/api/images/{second}/claim", headers=them).status_code == 200
    assert client.post(f"/api/images/{second}/done", headers=them).status_code == 200
    assert client.get(peek, headers=me).status_code == 204
    assert client.get(peek, headers=me, params={"exclude": 0}).status_code == 422
