"""The selection strategy decides what claim next and the peek give (issue 18), on SQLite and PostgreSQL.

Scores are written with `backend.selection.service.store_scores` + `rank_project`, what the score
job does with the model service's answers (the job itself: tests/backend/test_selection_job.py), so
each image's place in every strategy's order is known here.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from backend.auto.service import images_to_do
from backend.selection import service
from backend.tables import ModelOrigin, ModelVersion, Project
from backend.tables.selection import ImageScore
from model_server.api import ImageScores
from tests.backend.test_concurrency import members, run_parallel, upload


def unit(vector: np.ndarray) -> list[float]:
    return (vector / np.linalg.norm(vector)).tolist()


def score_images(db, project_id: int, image_ids: list[int], version_id: int) -> None:
    """Images 0-2 one scene (near-identical vectors), 3 and 4 each a scene of its own; image 1 is the
    one the model is least sure of, then image 4."""
    rng = np.random.default_rng(0)
    scene = rng.standard_normal(256)
    vectors = [scene, scene + 1e-3 * rng.standard_normal(256), scene + 1e-3 * rng.standard_normal(256)]
    vectors += [rng.standard_normal(256), rng.standard_normal(256)]
    uncertainty = [0.1, 0.9, 0.2, 0.3, 0.6]
    project = db.get(Project, project_id)
    scored = {
        image_id: ImageScores(pooled=unit(v), uncertainty=u, details={"disagreement": u})
        for image_id, v, u in zip(image_ids, vectors, uncertainty)
    }
    service.store_scores(db, project, version_id, scored)
    service.rank_project(db, project)
    db.commit()


@pytest.fixture
def scored(client, db, project, manager_headers):
    image_ids = upload(client, manager_headers, project.id, 6)  # the sixth is never scored
    # Scores name the version they came from; no model runs here, so a row is enough.
    version = ModelVersion(project_id=project.id, name="scored", architecture="vit_t", origin=ModelOrigin.untrained)
    db.add(version)
    db.commit()
    score_images(db, project.id, image_ids[:5], version.id)
    return image_ids


def set_strategy(client, project_id: int, headers, strategy: str) -> None:
    response = client.patch(
        f"/api/projects/{project_id}", json={"settings": {"selection": {"strategy": strategy}}}, headers=headers
    )
    assert response.status_code == 200, response.text


def claim_all(client, project_id: int, headers) -> list[int]:
    """Claim next until nothing is left, finishing each image: the order claim next hands them out."""
    order = []
    while True:
        peek = client.get(f"/api/projects/{project_id}/images/next", headers=headers)
        claim = client.post(f"/api/projects/{project_id}/claim", headers=headers)
        if claim.status_code == 204:
            assert peek.status_code == 204
            return order
        assert claim.status_code == 200, claim.text
        image_id = claim.json()["id"]
        assert peek.json()["id"] == image_id  # what the annotate page prefetches is what it gets
        order.append(image_id)
        assert client.post(f"/api/images/{image_id}/done", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("upload_order", [0, 1, 2, 3, 4, 5]),
        ("uncertainty", [1, 4, 3, 2, 0, 5]),
    ],
)
def test_the_setting_switches_what_claim_next_returns(client, project, manager_headers, scored, strategy, expected):
    set_strategy(client, project.id, manager_headers, strategy)
    assert claim_all(client, project.id, manager_headers) == [scored[i] for i in expected]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("upload_order", [0, 1, 2, 3, 4, 5]),
        ("uncertainty", [1, 4, 3, 2, 0, 5]),
    ],
)
def test_the_stage_3_queue_follows_the_setting_too(client, db, project, manager_headers, scored, strategy, expected):
    """The automatic stage's job walks its images in `auto.service.images_to_do`'s order: claim next's."""
    set_strategy(client, project.id, manager_headers, strategy)
    db.expire_all()
    total, todo = images_to_do(db, project.id)
    assert total == len(scored) and todo == [scored[i] for i in expected]


@pytest.mark.parametrize("strategy", ["diversity", "mix"])
def test_diversity_hands_out_each_scene_before_a_second_frame_of_one(
    client, project, manager_headers, scored, strategy
):
    set_strategy(client, project.id, manager_headers, strategy)
    order = claim_all(client, project.id, manager_headers)
    scene = {scored[0]: "a", scored[1]: "a", scored[2]: "a", scored[3]: "b", scored[4]: "c"}
    assert sorted(scene[i] for i in order[:3]) == ["a", "b", "c"], order
    assert order[-1] == scored[5]  # not scored yet: after every scored image
    if strategy == "mix":
        assert order[0] == scored[1]  # the scene the model is least sure of, by its least sure frame


def test_random_order_is_seeded_per_project(client, db, project, manager_headers, scored):
    set_strategy(client, project.id, manager_headers, "random")
    ranks = dict(db.execute(select(ImageScore.image_id, ImageScore.random_rank)).all())
    expected = sorted(scored[:5], key=lambda i: ranks[i]) + [scored[5]]
    assert claim_all(client, project.id, manager_headers) == expected


def test_near_duplicates_are_flagged_in_the_image_list_and_the_dashboard(client, project, manager_headers, scored):
    listed = {i["id"]: i for i in client.get(f"/api/projects/{project.id}/images", headers=manager_headers).json()}
    assert [listed[i]["near_duplicate_of"] for i in scored] == [None, scored[0], scored[0], None, None, None]
    set_strategy(client, project.id, manager_headers, "uncertainty")
    view = client.get(f"/api/projects/{project.id}/selection?limit=3", headers=manager_headers).json()
    assert view["strategy"] == "uncertainty"
    assert view["unscored"] == 1 and view["near_duplicates"] == 2
    # Scores 0.1, 0.2, 0.3, 0.6, 0.9 each in the bar it starts (np.histogram's edges put 0.3 and 0.6 one bar low).
    assert view["uncertainty_histogram"] == [0, 1, 1, 1, 0, 0, 1, 0, 0, 1]
    assert [u["image_id"] for u in view["upcoming"]] == [scored[1], scored[4], scored[3]]
    assert view["upcoming"][0]["near_duplicate_of"] == scored[0]


def test_bad_selection_settings_are_422(client, project, manager_headers):
    for bad in ({"strategy": "smart"}, {"seed": -1}, {"near_duplicate_similarity": 0}, {"strategy": 1}):
        response = client.patch(
            f"/api/projects/{project.id}", json={"settings": {"selection": bad}}, headers=manager_headers
        )
        assert response.status_code == 422, (bad, response.text)


def test_two_annotators_never_get_the_same_image_under_a_scored_strategy(
    client, project, make_user, login, manager_headers, scored
):
    set_strategy(client, project.id, manager_headers, "uncertainty")
    annotators = members(client, project, make_user, login, manager_headers, 4)
    answers: dict[int, list[int]] = {}

    def claimant(user_id: int, headers: dict):
        def work(own) -> None:
            answers[user_id] = []
            for _ in range(2):
                response = own.post(f"/api/projects/{project.id}/claim", headers=headers)
                assert response.status_code in (200, 204), response.text
                if response.status_code == 200:
                    image_id = response.json()["id"]
                    answers[user_id].append(image_id)
                    assert own.post(f"/api/images/{image_id}/done", headers=headers).status_code == 200

        return work

    run_parallel(client, [claimant(user_id, headers) for user_id, headers in annotators])
    handed_out = [image_id for ids in answers.values() for image_id in ids]
    assert len(handed_out) == len(set(handed_out)) == 6


def test_done_images_are_ranked_after_the_open_ones(client, db, project, manager_headers, scored):
    set_strategy(client, project.id, manager_headers, "upload_order")
    claimed = client.post(f"/api/projects/{project.id}/claim", headers=manager_headers).json()["id"]
    assert client.post(f"/api/images/{claimed}/done", headers=manager_headers).status_code == 200
    service.rank_project(db, db.get(Project, project.id))
    db.commit()
    for column in (ImageScore.random_rank, ImageScore.diversity_rank, ImageScore.mix_rank):
        ranks = dict(db.execute(select(ImageScore.image_id, column)).all())
        assert sorted(ranks.values()) == [0, 1, 2, 3, 4]
        if column is not ImageScore.random_rank:
            assert ranks[claimed] == 4  # the done image last: a stage change reopens it last
