"""A team sets itself up in the browser: the image list (filters, paging, mask counts), assigning
images to annotators (and what claims do with it), archiving a project, changing members' roles
without losing the last manager, and uploads that keep the good files. Through the HTTP API, on
SQLite and PostgreSQL, with real photographs."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from pycocotools import mask as mask_util
from sqlalchemy import event

from backend.tables import Role

GRABCUT = ["106024.jpg", "124080.jpg", "153077.jpg", "153093.jpg", "181079.jpg"]


def photo(data_root, name: str) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, (data_root / "grabcut" / "images" / name).read_bytes(), "image/jpeg"))


@pytest.fixture
def images(client, project, manager_headers, data_root):
    """Four real photographs uploaded to `project`, in upload order."""
    response = client.post(
        f"/api/projects/{project.id}/images", files=[photo(data_root, n) for n in GRABCUT[:4]], headers=manager_headers
    )
    assert response.status_code == 201, response.text
    return response.json()["images"]


@pytest.fixture
def add_member(client, project, make_user, login, manager_headers):
    """A new user of `global_role` made a member of `project` (as `role_in_project`): (user, headers)."""

    def _add(global_role: Role = Role.annotator, role_in_project: str | None = None, username: str | None = None):
        user = make_user(global_role, username)
        body = {"user_id": user.id} | ({"role_in_project": role_in_project} if role_in_project else {})
        response = client.post(f"/api/projects/{project.id}/members", json=body, headers=manager_headers)
        assert response.status_code == 201, response.text
        return user, login(user)

    return _add


def save_mask(client, image: dict, headers, client_id: str):
    pixels = np.zeros((image["height"], image["width"]), np.uint8, order="F")
    pixels[10:40, 20:60] = 1
    encoded = mask_util.encode(pixels)
    return client.post(
        f"/api/images/{image['id']}/masks",
        headers=headers,
        json={"client_id": client_id, "rle": {"size": list(pixels.shape), "counts": encoded["counts"].decode()}},
    )


def assign(client, image_id: int, user_id: int | None, headers):
    return client.post(f"/api/images/{image_id}/assign", json={"user_id": user_id}, headers=headers)


# --- the image list ------------------------------------------------------------------------------------


def test_the_list_filters_pages_and_counts_live_masks(client, project, images, manager_headers, add_member):
    alice, a = add_member(username="alice")
    assert assign(client, images[1]["id"], alice.id, manager_headers).status_code == 200
    assert assign(client, images[3]["id"], alice.id, manager_headers).status_code == 200
    for k in range(3):
        assert save_mask(client, images[1], manager_headers, f"m{k}").status_code == 201
    deleted = save_mask(client, images[1], manager_headers, "gone").json()
    assert client.delete(f"/api/masks/{deleted['id']}", headers=manager_headers).status_code == 204

    listed = client.get(f"/api/projects/{project.id}/images", headers=a)
    assert listed.status_code == 200, listed.text
    assert listed.headers["X-Total-Count"] == "4"
    by_id = {i["id"]: i for i in listed.json()}
    assert [i["id"] for i in listed.json()] == [i["id"] for i in images]
    second = by_id[images[1]["id"]]
    assert (second["assigned_to"], second["assigned_username"], second["mask_count"]) == (alice.id, "alice", 3)
    assert (by_id[images[0]["id"]]["assigned_to"], by_id[images[0]["id"]]["mask_count"]) == (None, 0)
    thumbnail = client.get(second["thumbnail_url"], headers=a)
    assert second["thumbnail_url"] == f"/api/images/{images[1]['id']}/thumbnail"
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"

    mine = client.get(f"/api/projects/{project.id}/images", params={"assigned_to": alice.id, "limit": 1}, headers=a)
    assert mine.headers["X-Total-Count"] == "2"  # under the filter, not the page
    assert [i["id"] for i in mine.json()] == [images[1]["id"]]
    page2 = client.get(
        f"/api/projects/{project.id}/images", params={"assigned_to": alice.id, "limit": 1, "offset": 1}, headers=a
    )
    assert [i["id"] for i in page2.json()] == [images[3]["id"]]
    assert save_mask(client, images[0], manager_headers, "claims-it").status_code == 201
    assert client.post(f"/api/images/{images[2]['id']}/claim", headers=a).status_code == 200
    in_progress = client.get(f"/api/projects/{project.id}/images", params={"status": "in_progress"}, headers=a)
    assert [i["id"] for i in in_progress.json()] == [images[2]["id"]]
    assert in_progress.headers["X-Total-Count"] == "1"
    # One image, the same answer as in the list.
    assert client.get(f"/api/images/{images[1]['id']}", headers=a).json() == second


def test_a_page_costs_the_same_statements_for_one_image_or_many(client, project, images, manager_headers):
    """The mask counts and names come with the page, not one query per image."""
    for image in images:
        save_mask(client, image, manager_headers, f"on-{image['id']}")
    statements: list[str] = []
    engine = client.app.state.engine

    def count(*_args) -> None:
        statements.append("x")

    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = []
        for limit in (1, 4):
            statements.clear()
            page = client.get(f"/api/projects/{project.id}/images", params={"limit": limit}, headers=manager_headers)
            assert [i["mask_count"] for i in page.json()] == [1] * limit
            counts.append(len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert counts[0] == counts[1], counts


# --- assignment and claims -----------------------------------------------------------------------------


def test_assignment_only_to_members(client, project, images, manager_headers, make_user, add_member):
    outsider = make_user(Role.annotator)
    refused = assign(client, images[0]["id"], outsider.id, manager_headers)
    assert refused.status_code == 422
    assert refused.json()["detail"] == f"user {outsider.id} is not a member of project {project.id}"
    assert assign(client, images[0]["id"], outsider.id + 1000, manager_headers).status_code == 422  # no such user
    assert client.post(f"/api/images/{images[0]['id']}/assign", json={}, headers=manager_headers).status_code == 422
    bob, _ = add_member(username="bob")
    assigned = assign(client, images[0]["id"], bob.id, manager_headers)
    assert (assigned.json()["assigned_to"], assigned.json()["assigned_username"]) == (bob.id, "bob")
    freed = assign(client, images[0]["id"], None, manager_headers)
    assert (freed.json()["assigned_to"], freed.json()["assigned_username"]) == (None, None)


def test_claim_next_gives_ones_own_images_first_and_never_anothers(
    client, project, images, manager_headers, add_member
):
    alice, a = add_member(username="alice")
    bob, b = add_member(username="bob")
    assert assign(client, images[0]["id"], bob.id, manager_headers).status_code == 200
    assert assign(client, images[2]["id"], alice.id, manager_headers).status_code == 200

    first = client.post(f"/api/projects/{project.id}/claim", headers=a)
    assert first.json()["id"] == images[2]["id"]  # hers, before the older unassigned ones
    assert client.post(f"/api/projects/{project.id}/claim", headers=a).json()["id"] == images[2]["id"]  # resumes
    assert client.post(f"/api/images/{images[2]['id']}/done", headers=a).status_code == 200
    assert client.post(f"/api/projects/{project.id}/claim", headers=a).json()["id"] == images[1]["id"]  # not bob's
    assert client.post(f"/api/projects/{project.id}/claim", headers=b).json()["id"] == images[0]["id"]

    # Opening bob's image directly: refused to another annotator, naming bob; a manager may.
    assert assign(client, images[3]["id"], bob.id, manager_headers).status_code == 200
    refused = client.post(f"/api/images/{images[3]['id']}/claim", headers=a)
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"image {images[3]['id']} is assigned to bob: only they or a manager of the project may claim it"
    )
    assert client.post(f"/api/images/{images[3]['id']}/claim", headers=manager_headers).status_code == 200
    # Nothing else is left for alice: bob's images are never offered to her.
    assert client.post(f"/api/images/{images[1]['id']}/done", headers=a).status_code == 200
    assert client.post(f"/api/projects/{project.id}/claim", headers=a).status_code == 204


def test_removing_a_member_frees_their_images(client, project, images, manager_headers, add_member):
    bob, _ = add_member(username="bob")
    assert assign(client, images[0]["id"], bob.id, manager_headers).status_code == 200
    assert client.delete(f"/api/projects/{project.id}/members/{bob.id}", headers=manager_headers).status_code == 204
    assert client.get(f"/api/images/{images[0]['id']}", headers=manager_headers).json()["assigned_to"] is None


# --- archive ---------------------------------------------------------------------------------------------


def test_an_archived_project_is_hidden_and_read_only(client, project, images, manager_headers, add_member):
    _, a = add_member()
    assert save_mask(client, images[0], manager_headers, "before").status_code == 201
    archived = client.patch(f"/api/projects/{project.id}", json={"archived": True}, headers=manager_headers)
    assert archived.status_code == 200, archived.text
    assert archived.json()["archived"] is True
    assert [p["id"] for p in client.get("/api/projects", headers=a).json()] == []
    listed = client.get("/api/projects", params={"include_archived": True}, headers=a).json()
    assert [(p["id"], p["archived"]) for p in listed] == [(project.id, True)]

    refusal = f"project {project.id} is archived"
    for response in (
        client.post(f"/api/projects/{project.id}/claim", headers=a),
        client.post(f"/api/images/{images[1]['id']}/claim", headers=a),
        client.post(f"/api/images/{images[1]['id']}/claim", headers=manager_headers),
        save_mask(client, images[0], manager_headers, "after"),
    ):
        assert response.status_code == 409, response.text
        assert response.json()["detail"].startswith(refusal)
    # Everything else still reads: the project, its images, masks and an export.
    assert client.get(f"/api/projects/{project.id}", headers=a).status_code == 200
    assert client.get(f"/api/projects/{project.id}/images", headers=a).headers["X-Total-Count"] == "4"
    assert len(client.get(f"/api/images/{images[0]['id']}/masks", headers=a).json()) == 1
    export = client.get(f"/api/projects/{project.id}/export", params={"format": "coco"}, headers=manager_headers)
    assert export.status_code == 200, export.text
    with tarfile.open(fileobj=io.BytesIO(export.content)) as archive:
        assert archive.getnames()
    # Archiving again keeps it archived; restoring lets work go on.
    assert (
        client.patch(f"/api/projects/{project.id}", json={"archived": True}, headers=manager_headers).json()["archived"]
        is True
    )
    restored = client.patch(f"/api/projects/{project.id}", json={"archived": False}, headers=manager_headers)
    assert restored.json()["archived"] is False
    assert client.post(f"/api/projects/{project.id}/claim", headers=a).status_code == 200
    assert [p["id"] for p in client.get("/api/projects", headers=a).json()] == [project.id]


# --- members ---------------------------------------------------------------------------------------------


def test_member_roles_change_but_the_last_manager_stays(
    client, project, manager, manager_headers, add_member, admin, admin_headers, make_user
):
    members = f"/api/projects/{project.id}/members"
    alice, a = add_member(username="alice")
    # An admin who is a member without a role of their own is no manager of the project.
    assert client.post(members, json={"user_id": admin.id}, headers=manager_headers).status_code == 201
    for response in (
        client.patch(f"{members}/{manager.id}", json={"role_in_project": "annotator"}, headers=manager_headers),
        client.delete(f"{members}/{manager.id}", headers=admin_headers),
    ):
        assert response.status_code == 409, response.text
        assert "would leave project" in response.json()["detail"]
        assert "without a manager" in response.json()["detail"]

    promoted = client.patch(f"{members}/{alice.id}", json={"role_in_project": "manager"}, headers=manager_headers)
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["user_id"], promoted.json()["role"], promoted.json()["role_in_project"]) == (
        alice.id,
        "annotator",
        "manager",
    )
    # Alice now manages: she demotes the creator, then cannot demote or remove herself.
    demoted = client.patch(f"{members}/{manager.id}", json={"role_in_project": "ml_engineer"}, headers=a)
    assert demoted.json()["role_in_project"] == "ml_engineer"
    assert client.patch(f"{members}/{alice.id}", json={"role_in_project": "annotator"}, headers=a).status_code == 409
    assert client.delete(f"{members}/{alice.id}", headers=a).status_code == 409
    assert (
        client.patch(
            f"{members}/{manager.id}", json={"role_in_project": "annotator"}, headers=manager_headers
        ).status_code
        == 403
    )  # no manager here any more
    # A global manager added without a role of their own is a manager of the project and counts.
    carol = client.post(members, json={"user_id": make_user(Role.manager).id}, headers=a)
    assert carol.status_code == 201
    assert client.patch(f"{members}/{alice.id}", json={"role_in_project": "annotator"}, headers=a).status_code == 200


def test_member_updates_are_checked(client, project, manager, manager_headers, make_user, add_member):
    members = f"/api/projects/{project.id}/members"
    alice, _ = add_member()
    again = client.post(members, json={"user_id": alice.id, "role_in_project": "manager"}, headers=manager_headers)
    assert again.status_code == 409
    assert (
        client.patch(f"{members}/{alice.id}", json={"role_in_project": "admin"}, headers=manager_headers).status_code
        == 422
    )
    assert (
        client.patch(f"{members}/{alice.id}", json={"role_in_project": None}, headers=manager_headers).status_code
        == 422
    )
    stranger = make_user()
    missing = client.patch(f"{members}/{stranger.id}", json={"role_in_project": "annotator"}, headers=manager_headers)
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"user {stranger.id} is not a member of project {project.id}"
    # Keeping the last manager a manager is no change of who manages.
    same = client.patch(f"{members}/{manager.id}", json={"role_in_project": "manager"}, headers=manager_headers)
    assert same.status_code == 200


# --- uploads ---------------------------------------------------------------------------------------------


def test_a_partial_upload_stores_the_good_files_and_names_the_others(client, project, manager_headers, data_root):
    url = f"/api/projects/{project.id}/images"
    first = client.post(url, files=[photo(data_root, GRABCUT[0])], headers=manager_headers)
    assert first.status_code == 201 and first.json()["refused"] == []
    batch = [
        photo(data_root, GRABCUT[1]),
        ("files", ("again.jpg", photo(data_root, GRABCUT[0])[1][1], "image/jpeg")),
        ("files", ("notes.jpg", b"not an image at all", "image/jpeg")),
    ]

    whole = client.post(url, files=batch, headers=manager_headers)
    assert whole.status_code == 415, whole.text
    assert "nothing stored" in whole.json()["detail"]
    assert client.get(url, headers=manager_headers).headers["X-Total-Count"] == "1"

    partial = client.post(url, params={"partial": True}, files=batch, headers=manager_headers)
    assert partial.status_code == 201, partial.text
    body = partial.json()
    assert [i["file_name"] for i in body["images"]] == [GRABCUT[1]]
    assert body["images"][0]["mask_count"] == 0
    assert body["duplicates"] == [{"file_name": "again.jpg", "image_id": first.json()["images"][0]["id"]}]
    assert [r["file_name"] for r in body["refused"]] == ["notes.jpg"]
    assert "not a supported image" in body["refused"][0]["reason"]
    assert client.get(url, headers=manager_headers).headers["X-Total-Count"] == "2"
