"""Many clients at once through the real HTTP app, on SQLite and PostgreSQL: a clear 4xx, never a 5xx,
no image held by two annotators, and every accepted save exactly one row.

Each thread has its own `TestClient` on the same app (its own connection pool slot and session per
request), so requests really run in parallel against the database.
"""

from __future__ import annotations

import io
import random
import threading
from collections import defaultdict
from collections.abc import Callable

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image as PilImage
from pycocotools import mask as mask_util
from sqlalchemy import select

from backend.tables import Image, Mask, Role

SIDE = 64


def rle(x: int) -> dict:
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[x % 50 : x % 50 + 10, 5:20] = 1
    encoded = mask_util.encode(np.asfortranarray(mask))
    return {"size": [SIDE, SIDE], "counts": encoded["counts"].decode("ascii")}


def upload(client: TestClient, headers: dict, project_id: int, count: int) -> list[int]:
    files = []
    for k in range(count):
        buffer = io.BytesIO()
        PilImage.fromarray(np.full((SIDE, SIDE, 3), 10 * k, np.uint8)).save(buffer, "PNG")
        files.append(("files", (f"{k}.png", buffer.getvalue(), "image/png")))
    response = client.post(f"/api/projects/{project_id}/images", files=files, headers=headers)
    assert response.status_code == 201, response.text
    return [image["id"] for image in response.json()["images"]]


def members(client, project, make_user, login, manager_headers, count: int) -> list[tuple[int, dict]]:
    out = []
    for _ in range(count):
        user = make_user(Role.annotator)
        response = client.post(
            f"/api/projects/{project.id}/members", json={"user_id": user.id}, headers=manager_headers
        )
        assert response.status_code == 201, response.text
        out.append((user.id, login(user)))
    return out


def run_parallel(client: TestClient, jobs: list[Callable[[TestClient], None]]) -> None:
    """Run each job in its own thread with its own TestClient, all released at once; re-raise failures."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job: Callable[[TestClient], None]) -> None:
        try:
            own = TestClient(client.app)
            barrier.wait()
            job(own)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_parallel_retries_of_one_save_answer_like_the_first(client, db, project, make_user, login, manager_headers):
    """Before: (201, 500) in many rounds, the twin's IntegrityError surfaced in an autoflush outside the
    guarded commit. Now one 201 and one 200 with the same stored mask, every round."""
    (image_id,) = upload(client, manager_headers, project.id, 1)
    ((_, headers),) = members(client, project, make_user, login, manager_headers, 1)
    assert client.post(f"/api/images/{image_id}/claim", headers=headers).status_code == 200
    for round_ in range(30):
        body = {"client_id": f"twin-{round_}", "rle": rle(round_)}
        answers: list = []

        def post(own: TestClient, body=body, answers=answers) -> None:
            answers.append(own.post(f"/api/images/{image_id}/masks", json=body, headers=headers))

        run_parallel(client, [post, post])
        assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
        assert answers[0].json() == answers[1].json()
    rows = db.scalars(select(Mask.client_id).where(Mask.image_id == image_id)).all()
    assert sorted(rows) == sorted(f"twin-{k}" for k in range(30))


def test_twenty_clients_claiming_and_saving(client, db, project, make_user, login, manager_headers):
    """10 annotators with two tabs each (20 clients) claim images, save masks (the two tabs of one
    annotator send the same client ids: retries racing each other) and try to save on images others
    hold. Fewer images than annotators, locks that never expire here and no releases: an image
    claimed by two users at any point would show as two users in its claim answers."""
    image_ids = upload(client, manager_headers, project.id, 6)
    annotators = members(client, project, make_user, login, manager_headers, 10)
    lock = threading.Lock()
    statuses: list[tuple[str, int, str]] = []
    claimed_by: dict[int, set[int]] = defaultdict(set)  # image -> users whose claim was answered 200
    saved: dict[tuple[int, str], set[int]] = defaultdict(set)  # (image, client id) -> mask ids answered
    created: dict[tuple[int, str], int] = defaultdict(int)  # (image, client id) -> number of 201 answers

    def tab(user_id: int, headers: dict, seed: int) -> Callable[[TestClient], None]:
        rng = random.Random(seed)

        def work(own: TestClient) -> None:
            for round_ in range(3):
                claim = own.post(f"/api/projects/{project.id}/claim", headers=headers)
                other = rng.choice(image_ids)
                steal = own.post(f"/api/images/{other}/claim", headers=headers)
                with lock:
                    statuses.append(("claim", claim.status_code, claim.text))
                    statuses.append(("claim image", steal.status_code, steal.text))
                    for answer in (claim, steal):
                        if answer.status_code == 200:
                            claimed_by[answer.json()["id"]].add(answer.json()["assignee_id"])
                targets = [answer.json()["id"] for answer in (claim, steal) if answer.status_code == 200]
                targets.append(other)  # possibly someone else's: must be refused, store nothing
                for image_id in targets:
                    for k in range(2):
                        key = f"u{user_id}-r{round_}-k{k}"  # the same in both tabs of this user
                        answer = own.post(
                            f"/api/images/{image_id}/masks", json={"client_id": key, "rle": rle(k)}, headers=headers
                        )
                        with lock:
                            statuses.append(("save", answer.status_code, answer.text))
                            if answer.status_code in (200, 201):
                                assert answer.json()["author_id"] == user_id
                                saved[(image_id, key)].add(answer.json()["id"])
                                created[(image_id, key)] += answer.status_code == 201

        return work

    jobs = [tab(user_id, headers, seed=10 * user_id + t) for user_id, headers in annotators for t in range(2)]
    assert len(jobs) == 20
    run_parallel(client, jobs)

    assert not [s for s in statuses if s[1] >= 500], [s for s in statuses if s[1] >= 500][:3]
    expected = {"claim": {200, 204}, "claim image": {200, 409}, "save": {200, 201, 409}}
    assert not [s for s in statuses if s[1] not in expected[s[0]]], statuses
    refused = [s for s in statuses if s[0] == "save" and s[1] == 409]
    assert refused and all("claim" in s[2] for s in refused)
    assert all(len(users) == 1 for users in claimed_by.values()), dict(claimed_by)
    db.expire_all()
    holders = {i.id: i.assignee_id for i in db.scalars(select(Image).where(Image.id.in_(image_ids)))}
    assert all(holders[i] == next(iter(users)) for i, users in claimed_by.items())

    rows = db.execute(select(Mask.image_id, Mask.client_id, Mask.id, Mask.author_id)).all()
    stored = defaultdict(list)
    for image_id, key, mask_id, author in rows:
        stored[(image_id, key)].append(mask_id)
        assert holders[image_id] == author, "a mask saved on an image its author did not hold"
    assert saved, "nothing was saved"
    assert set(stored) == set(saved), "a refused save left a row, or an accepted one is missing"
    assert all(len(ids) == 1 for ids in stored.values()), "a client id stored twice on one image"
    assert all(saved[key] == set(stored[key]) for key in saved), "an answer named another row than the stored one"
    assert all(created[key] == 1 for key in saved), "a client id created (201) more than once, or never"
