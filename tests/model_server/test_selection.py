"""Selection scores from a stored embedding (model_server/selection.py), on the seeded random vit_t."""

from __future__ import annotations

import numpy as np
import pytest

from model_server.sam import build_sam
from model_server.selection import UNCERTAINTY, pool_embedding, score_embedding

ORIGINAL = (480, 854)  # DAVIS frames: resized to 576x1024 in the model frame
INPUT = (576, 1024)


@pytest.fixture(scope="module")
def sam():
    return build_sam("vit_t", seed=0)


@pytest.fixture(scope="module")
def embedding() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((1, 256, 64, 64)).astype(np.float16)


@pytest.fixture(scope="module")
def first(sam, embedding):
    return score_embedding(sam, embedding, ORIGINAL, INPUT)


def test_scores_are_deterministic_for_a_fixed_embedding(sam, embedding, first):
    second = score_embedding(sam, embedding.copy(), ORIGINAL, INPUT)
    assert first == second
    assert set(first.details) == {"low_iou", "instability", "disagreement"}
    assert all(0.0 <= value <= 1.0 for value in first.details.values())
    assert first.uncertainty == first.details[UNCERTAINTY]


def test_other_weights_score_the_same_embedding_differently(embedding, first):
    other = build_sam("vit_t", seed=1)
    assert score_embedding(other, embedding, ORIGINAL, INPUT).details != first.details


def test_pooled_vector_is_unit_length_and_ignores_the_padding(embedding):
    pooled = pool_embedding(embedding, INPUT)
    assert pooled.shape == (256,) and np.isclose(np.linalg.norm(pooled), 1.0, atol=1e-5)
    padded = embedding.copy()
    padded[..., 36:, :] = 100  # rows 36..63 are below the 576-pixel image: padding
    assert np.allclose(pool_embedding(padded, INPUT), pooled)
    inside = embedding.copy()
    inside[..., :36, :] += 1
    assert not np.allclose(pool_embedding(inside, INPUT), pooled)
