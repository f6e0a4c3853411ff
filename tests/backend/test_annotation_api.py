"""Claiming images (locks, expiry, two annotators) and saving masks (RLE checks, idempotency, delete,
who may save and delete on whose claim), through the HTTP API on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pycocotools import mask as mask_util
from sqlalchemy import update

from backend.annotation import service
from backend.core.db import make_engine, make_session_factory
from backend.tables import Image, Mask, MaskSource, Role, Stage

GRABCUT = ["106024.jpg", "124080.jpg", "153077.jpg", "153093.jpg"]


@pytest.fixture
def images(client, project, manager_headers, data_root):
    """Four real photographs uploaded to `project`, in upload order."""
    files = [
        ("files", (name, (data_root / "grabcut" / "images" / name).read_bytes(), "image/jpeg")) for name in GRABCUT
    ]
    response = client.post(f"/api/projects/{project.id}/images", files=files, headers=manager_headers)
    assert response.status_code == 201, response.text
    return response.json()["images"]


@pytest.fixture
def annotators(client, project, make_user, login, manager_headers):
    """Two annotators who are members of `project`, as (user, headers)."""
    out = []
    for _ in range(2):
        user = make_user(Role.annotator)
        response = client.post(
            f"/api/projects/{project.id}/members", json={"user_id": user.id}, headers=manager_headers
        )
        assert response.status_code in (200, 201), response.text
        out.append((user, login(user)))
    return out


def rle_of(mask: np.ndarray) -> dict:
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": encoded["counts"].decode("ascii")}


def square_mask(image: dict, x: int = 10, y: int = 20, w: int = 30, h: int = 40) -> np.ndarray:
    mask = np.zeros((image["height"], image["width"]), np.uint8)
    mask[y : y + h, x : x + w] = 1
    return mask


def claim(client, project, headers):
    return client.post(f"/api/projects/{project.id}/claim", headers=headers)


def claim_image(client, image_id, headers):
    response = client.post(f"/api/images/{image_id}/claim", headers=headers)
    assert response.status_code == 200, response.text


def test_two_annotators_never_get_the_same_image(client, project, images, annotators):
    (alice, a), (bob, b) = annotators
    first = claim(client, project, a)
    assert first.status_code == 200, first.text
    assert first.json()["id"] == images[0]["id"]
    assert first.json()["assignee_id"] == alice.id
    assert first.json()["status"] == "in_progress"
    second = claim(client, project, b).json()
    assert second["id"] == images[1]["id"]
    # Claiming again resumes one's own image instead of taking another.
    assert claim(client, project, a).json()["id"] == images[0]["id"]
    # Opening the other's image is refused while the lock lives.
    response = client.post(f"/api/images/{images[0]['id']}/claim", headers=b)
    assert response.status_code == 409
    assert "another user" in response.json()["detail"]


def test_nothing_left_is_204(client, project, images, annotators, db):
    (_, a), (_, b) = annotators
    taken = {claim(client, project, a).json()["id"]}
    db.execute(update(Image).where(Image.id.in_([i["id"] for i in images[1:]])).values(status="done"))
    db.commit()
    response = claim(client, project, b)
    assert response.status_code == 204, f"expected nothing left, got {response.text}"
    assert taken == {images[0]["id"]}


def test_an_expired_lock_is_free_again(client, project, images, annotators, db):
    (_, a), (bob, b) = annotators
    image_id = claim(client, project, a).json()["id"]
    assert client.post(f"/api/images/{image_id}/claim", headers=b).status_code == 409
    db.execute(update(Image).where(Image.id == image_id).values(locked_until=datetime.now(UTC) - timedelta(seconds=1)))
    db.commit()
    response = client.post(f"/api/images/{image_id}/claim", headers=b)
    assert response.status_code == 200, response.text
    assert response.json()["assignee_id"] == bob.id


def test_release_frees_the_image_and_done_finishes_it(client, project, images, annotators, db):
    (alice, a), (_, b) = annotators
    image_id = claim(client, project, a).json()["id"]
    assert client.post(f"/api/images/{image_id}/done", headers=b).status_code == 409
    assert client.post(f"/api/images/{image_id}/release", headers=a).status_code == 200
    assert claim(client, project, b).json()["id"] == image_id
    done = client.post(f"/api/images/{image_id}/done", headers=b)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"
    row = db.get(Image, image_id, populate_existing=True)
    assert row.locked_until is None
    assert Stage.assisted_manual.value in row.stage_done
    # A finished image is never handed out again.
    claimed = {claim(client, project, h).json()["id"] for h in (a, b)}
    assert image_id not in claimed


def test_concurrent_claims_get_distinct_images(settings, project, images, make_user):
    """Eight sessions race for four images: each image goes to at most one user, none is lost."""
    users = [make_user(Role.annotator) for _ in range(8)]
    engine = make_engine(settings.db_url)
    factory = make_session_factory(engine)
    results: dict[int, int | None] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users))

    def run(user_id: int) -> None:
        try:
            with factory() as session:
                user = session.get(type(users[0]), user_id)
                proj = session.get(type(project), project.id)
                barrier.wait()
                image = service.claim_next_image(session, proj, user, timedelta(minutes=5))
                results[user_id] = image.id if image else None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(u.id,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    assert not errors, errors
    won = [i for i in results.values() if i is not None]
    assert sorted(won) == sorted(i["id"] for i in images), results


def test_save_is_idempotent_by_client_id(client, project, images, annotators, db):
    (alice, a), _ = annotators
    image = images[0]
    claim_image(client, image["id"], a)
    mask = square_mask(image)
    body = {
        "client_id": "c-1",
        "rle": rle_of(mask),
        "prompts": {"points": [{"x": 20, "y": 30, "label": 1}]},
        "seconds_spent": 4.5,
        "clicks": 2,
    }
    first = client.post(f"/api/images/{image['id']}/masks", json=body, headers=a)
    assert first.status_code == 201, first.text
    out = first.json()
    assert out["area"] == 30 * 40
    assert out["bbox"] == [10, 20, 30, 40]
    assert (out["source"], out["stage"], out["author_id"], out["clicks"]) == ("manual", "assisted_manual", alice.id, 2)
    assert out["prompts"] == body["prompts"]
    again = client.post(f"/api/images/{image['id']}/masks", json=body, headers=a)
    assert again.status_code == 200
    assert again.json() == out
    assert db.query(Mask).filter(Mask.image_id == image["id"]).count() == 1
    # Client ids are per image: the same one on another image is another mask (and says nothing
    # about ids used elsewhere).
    claim_image(client, images[1]["id"], a)
    other = client.post(
        f"/api/images/{images[1]['id']}/masks", json={**body, "rle": rle_of(square_mask(images[1]))}, headers=a
    )
    assert other.status_code == 201, other.text
    assert other.json()["id"] != out["id"]
    listed = client.get(f"/api/images/{image['id']}/masks", headers=a).json()
    assert [m["id"] for m in listed] == [out["id"]]
    assert np.array_equal(
        mask_util.decode({"size": listed[0]["rle"]["size"], "counts": listed[0]["rle"]["counts"].encode()}), mask
    )


def test_uncompressed_counts_are_accepted_and_stored_canonically(client, images, annotators):
    _, a = annotators[0]
    image = images[0]
    claim_image(client, image["id"], a)
    mask = square_mask(image, 0, 0, 5, 7)
    column_major = mask.flatten(order="F")
    runs, value, run = [], 0, 0
    for v in column_major:
        if v != value:
            runs.append(run)
            value, run = v, 0
        run += 1
    runs.append(run)
    response = client.post(
        f"/api/images/{image['id']}/masks",
        json={"client_id": "u-1", "rle": {"size": list(mask.shape), "counts": runs}},
        headers=a,
    )
    assert response.status_code == 201, response.text
    assert response.json()["rle"] == rle_of(mask)
    assert response.json()["area"] == 35


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [10, 10], "counts": "0"}, "does not match the image size"),
        ({"size": "SIZE", "counts": "0"}, "size"),
        ({"size": None, "counts": ")!"}, "invalid character"),
        ({"size": None, "counts": "P"}, "ends in the middle"),
        ({"size": None, "counts": "1"}, "covers 1 pixels"),
        ({"size": None, "counts": [5, 3]}, "covers 8 pixels"),
        ({"size": None, "counts": [-5, 3]}, "greater than or equal to 0"),  # bounded by the schema
        ({"size": None, "counts": "EMPTY"}, "empty"),
    ],
)
def test_bad_rle_is_422_with_a_clear_message(client, images, annotators, rle, message):
    _, a = annotators[0]
    image = images[0]
    h, w = image["height"], image["width"]
    rle = dict(rle)
    if rle["size"] is None:
        rle["size"] = [h, w]
    if rle["counts"] == "EMPTY":
        rle["counts"] = [h * w]
    response = client.post(
        f"/api/images/{image['id']}/masks", json={"client_id": f"bad-{message}", "rle": rle}, headers=a
    )
    assert response.status_code == 422, response.text
    assert message in str(response.json()["detail"])


def test_delete_is_soft_and_records_a_deleted_prefill(client, project, images, annotators, db):
    _, a = annotators[0]
    image = images[0]
    claim_image(client, image["id"], a)
    saved = client.post(
        f"/api/images/{image['id']}/masks", json={"client_id": "d-1", "rle": rle_of(square_mask(image))}, headers=a
    ).json()
    prefilled = Mask(
        image_id=image["id"],
        project_id=project.id,
        rle=rle_of(square_mask(image, 50, 50, 5, 5)),
        bbox=[50, 50, 5, 5],
        area=25,
        source=MaskSource.detector,
        stage=Stage.semi_automatic,
        predicted_iou=0.9,
        provenance={"origin": "detector"},
    )
    db.add(prefilled)
    db.commit()
    listed = client.get(f"/api/images/{image['id']}/masks", headers=a).json()
    assert [(m["id"], m["source"]) for m in listed] == [(saved["id"], "manual"), (prefilled.id, "detector")]
    for mask_id in (saved["id"], prefilled.id):
        assert client.delete(f"/api/masks/{mask_id}", headers=a).status_code == 204
    assert client.delete(f"/api/masks/{saved['id']}", headers=a).status_code == 204  # twice: still fine
    assert client.get(f"/api/images/{image['id']}/masks", headers=a).json() == []
    db.expire_all()
    manual, detector = db.get(Mask, saved["id"]), db.get(Mask, prefilled.id)
    assert manual.deleted_at is not None and manual.prefill_outcome is None
    assert detector.deleted_at is not None and detector.prefill_outcome.value == "deleted"
    assert client.delete("/api/masks/999999", headers=a).status_code == 404


def test_non_members_get_404(client, project, images, make_user, login, annotators):
    _, a = annotators[0]
    claim_image(client, images[0]["id"], a)
    saved = client.post(
        f"/api/images/{images[0]['id']}/masks",
        json={"client_id": "m-1", "rle": rle_of(square_mask(images[0]))},
        headers=a,
    ).json()
    outsider = login(make_user(Role.annotator))
    image_id = images[0]["id"]
    for method, path, kwargs in (
        ("post", f"/api/projects/{project.id}/claim", {}),
        ("post", f"/api/images/{image_id}/claim", {}),
        ("post", f"/api/images/{image_id}/release", {}),
        ("post", f"/api/images/{image_id}/done", {}),
        ("get", f"/api/images/{image_id}/masks", {}),
        (
            "post",
            f"/api/images/{image_id}/masks",
            {"json": {"client_id": "m-2", "rle": rle_of(square_mask(images[0]))}},
        ),
        ("delete", f"/api/masks/{saved['id']}", {}),
    ):
        response = getattr(client, method)(path, headers=outsider, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
    assert client.get("/api/images/1/masks").status_code == 401


def save(client, image, headers, client_id, **extra):
    body = {"client_id": client_id, "rle": rle_of(square_mask(image)), **extra}
    return client.post(f"/api/images/{image['id']}/masks", json=body, headers=headers)


def test_saving_needs_the_callers_live_claim(client, project, images, annotators, manager_headers, db):
    """Before: ann3's save on an image claimed by ann1 was stored (201) although ann3's claim got 409."""
    (alice, a), (_, b) = annotators
    image = images[0]
    response = save(client, image, a, "no-claim")
    assert response.status_code == 409 and "claim image" in response.json()["detail"], response.text
    claim_image(client, image["id"], a)
    assert client.post(f"/api/images/{image['id']}/claim", headers=b).status_code == 409
    response = save(client, image, b, "not-mine")
    assert response.status_code == 409, response.text
    assert f"claimed by {alice.username}" in response.json()["detail"]
    assert save(client, image, a, "mine").status_code == 201
    # A manager of the project fixes masks without claiming.
    assert save(client, image, manager_headers, "by-manager").status_code == 201
    # An expired claim is no claim.
    db.execute(
        update(Image).where(Image.id == image["id"]).values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.commit()
    assert save(client, image, a, "expired").status_code == 409
    # A retry of a stored save answers like the first request, whoever holds the image now.
    claim_image(client, image["id"], b)
    again = save(client, image, a, "mine")
    assert again.status_code == 200 and again.json()["author_id"] == alice.id
    assert sorted(m.client_id for m in db.query(Mask).filter(Mask.image_id == image["id"])) == ["by-manager", "mine"]


def test_a_save_extends_the_claim(client, project, images, annotators, settings, db):
    (alice, a), _ = annotators
    image = images[0]
    claim_image(client, image["id"], a)
    db.execute(
        update(Image).where(Image.id == image["id"]).values(locked_until=datetime.now(UTC) + timedelta(seconds=5))
    )
    db.commit()
    assert save(client, image, a, "activity").status_code == 201
    row = db.get(Image, image["id"], populate_existing=True)
    assert row.assignee_id == alice.id
    assert row.locked_until > datetime.now(UTC) + timedelta(seconds=settings.lock_expiry_seconds - 60)


def test_who_may_delete_which_mask(client, project, images, annotators, manager_headers, db):
    """Before: any member could delete another annotator's manual mask."""
    (_, a), (_, b) = annotators
    image, other_image = images[0], images[1]
    claim_image(client, image["id"], a)
    alices = save(client, image, a, "alice-1").json()
    alices_second = save(client, image, a, "alice-2").json()
    prefilled = Mask(
        image_id=image["id"],
        project_id=project.id,
        rle=rle_of(square_mask(image, 50, 50, 5, 5)),
        bbox=[50, 50, 5, 5],
        area=25,
        source=MaskSource.detector,
        stage=Stage.semi_automatic,
        predicted_iou=0.9,
        provenance={"origin": "detector"},
    )
    db.add(prefilled)
    db.commit()
    claim_image(client, other_image["id"], b)
    response = client.delete(f"/api/masks/{alices['id']}", headers=b)
    assert response.status_code == 403 and "manager" in response.json()["detail"], response.text
    # Pre-filled masks are the claim holder's to throw away.
    assert client.delete(f"/api/masks/{prefilled.id}", headers=b).status_code == 409
    assert client.delete(f"/api/masks/{prefilled.id}", headers=a).status_code == 204
    assert client.delete(f"/api/masks/{alices['id']}", headers=a).status_code == 204
    # Without her claim, not even her own.
    assert client.post(f"/api/images/{image['id']}/release", headers=a).status_code == 200
    assert client.delete(f"/api/masks/{alices_second['id']}", headers=a).status_code == 409
    assert client.delete(f"/api/masks/{alices_second['id']}", headers=manager_headers).status_code == 204
    db.expire_all()
    assert all(db.get(Mask, i).deleted_at is not None for i in (alices["id"], alices_second["id"], prefilled.id))
