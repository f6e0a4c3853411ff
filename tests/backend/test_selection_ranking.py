"""The strategies' orders over pooled embeddings (backend/selection/ranking.py): pure numpy."""

from __future__ import annotations

import numpy as np

from backend.selection.ranking import greedy_order, near_duplicates, random_order


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def scenes(seed: int = 0, frames: int = 5, count: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """`count` distant scenes of `frames` near-identical frames each: (vectors, scene of each row)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, 256))
    rows = np.repeat(centres, frames, axis=0) + 0.01 * rng.standard_normal((count * frames, 256))
    order = rng.permutation(count * frames)  # scenes interleaved in upload order
    return unit(rows[order]), np.repeat(np.arange(count), frames)[order]


def test_diversity_never_picks_two_near_identical_frames_while_a_distant_one_is_left():
    for seed in range(5):
        vectors, scene = scenes(seed)
        picks = [int(scene[i]) for i in greedy_order(vectors)]
        assert sorted(picks[:4]) == [0, 1, 2, 3], picks  # one frame of every scene first


def test_diversity_starts_from_what_is_already_annotated():
    vectors, scene = scenes(1)
    annotated = vectors[scene == 2][:1]
    order = greedy_order(vectors[scene != 2], annotated)
    rest = scene[scene != 2]
    assert sorted(int(rest[i]) for i in order[:3]) == [0, 1, 3]


def test_mix_prefers_uncertain_images_among_distinct_ones_and_still_skips_near_duplicates():
    vectors, scene = scenes(2)
    weights = np.where(scene == 3, 1.0, 0.1)  # scene 3 is the one the model is unsure of
    order = greedy_order(vectors, weights=weights)
    assert scene[order[0]] == 3
    assert sorted(int(scene[i]) for i in order[:4]) == [0, 1, 2, 3]


def test_orders_are_deterministic_permutations():
    vectors, _ = scenes(3)
    assert greedy_order(vectors) == greedy_order(vectors.copy())
    assert sorted(greedy_order(vectors)) == list(range(len(vectors)))
    assert greedy_order(np.zeros((0, 256))) == []


def test_random_order_depends_on_the_seed_and_keeps_places_when_images_are_added():
    ids = list(range(1, 41))
    first, other = random_order(ids, 0), random_order(ids, 1)
    assert sorted(first) == list(range(40)) and first != other and first != list(range(40))
    before = [ids[i] for i in random_order(ids[:20], 0)]
    after = [ids[i] for i in random_order(ids, 0) if ids[i] <= 20]
    assert before == after


def test_near_duplicate_is_the_later_upload_and_only_above_the_threshold():
    vectors, scene = scenes(4, frames=2, count=2)
    ids = np.arange(1, 5)
    found = near_duplicates(vectors, ids, vectors, ids, 0.99)
    for row, match in enumerate(found):
        same_scene_earlier = [int(ids[j]) for j in range(row) if scene[j] == scene[row]]
        if same_scene_earlier:
            assert match is not None and match[0] == same_scene_earlier[0] and match[1] >= 0.99
        else:
            assert match is None
    assert all(m is None for m in near_duplicates(vectors, ids, vectors, ids, 1.0 + 1e-9))
