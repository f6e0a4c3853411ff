"""The prompt simulators: training points inside the mask / error region with the right labels,
box noise bounded, and the evaluation click at the farthest error point."""

from __future__ import annotations

import numpy as np
import pytest

from model_server.clicks import (
    BACKGROUND,
    FOREGROUND,
    bounding_box,
    error_regions,
    farthest_error_click,
    noisy_box,
    random_error_click,
    uniform_point,
)


def square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_uniform_point_is_inside_and_covers_the_mask():
    mask = square(40, 60, 5, 15, 20, 30) | square(40, 60, 30, 35, 2, 4)
    rng = np.random.default_rng(0)
    points = [uniform_point(mask, rng) for _ in range(2000)]
    assert all(mask[y, x] for x, y in points)
    # Uniform: the small blob (10 of 110 pixels) gets about its share.
    share = np.mean([y >= 30 for _, y in points])
    assert 0.05 < share < 0.13
    with pytest.raises(ValueError, match="empty"):
        uniform_point(np.zeros((4, 4), bool), rng)


def test_random_error_click_labels_missed_foreground_positive_and_spill_negative():
    target = square(50, 50, 10, 30, 10, 30)
    pred = square(50, 50, 10, 30, 20, 40)  # misses columns 10–19, spills over 30–39
    rng = np.random.default_rng(1)
    clicks = [random_error_click(pred, target, rng) for _ in range(500)]
    for x, y, label in clicks:
        assert pred[y, x] != target[y, x]
        assert label == (FOREGROUND if target[y, x] else BACKGROUND)
    assert {label for _, _, label in clicks} == {FOREGROUND, BACKGROUND}
    assert random_error_click(target, target, rng) is None


def test_error_clicks_respect_the_valid_region():
    target = square(20, 20, 0, 20, 0, 10)
    pred = np.zeros_like(target)
    valid = square(20, 20, 0, 20, 0, 5)
    rng = np.random.default_rng(2)
    assert all(x < 5 for x, _, _ in (random_error_click(pred, target, rng, valid) for _ in range(200)))
    false_neg, false_pos = error_regions(pred, target, valid)
    assert false_neg.sum() == 100 and not false_pos.any()
    x, _, _ = farthest_error_click(pred, target, valid)
    assert x < 5


def test_farthest_click_starts_at_the_object_centre():
    target = square(41, 61, 10, 31, 20, 41)  # 21x21 square centred at (30, 20)
    assert farthest_error_click(np.zeros_like(target), target) == (30, 20, FOREGROUND)


def test_farthest_click_goes_to_the_larger_error_and_is_negative_for_spill():
    target = square(60, 60, 20, 40, 20, 40)
    pred = target | square(60, 60, 0, 60, 44, 60)  # a 16-px-wide spill band on the right; nothing missed
    x, y, label = farthest_error_click(pred, target)
    assert label == BACKGROUND and pred[y, x] and not target[y, x]
    assert 51 <= x <= 52  # centre of columns 44–59
    pred[20:40, 20:22] = False  # a 2-px miss: the spill band is still the farther error
    assert farthest_error_click(pred, target)[2] == BACKGROUND
    assert farthest_error_click(target, target) is None


def test_image_border_counts_as_boundary():
    target = np.ones((10, 30), dtype=bool)
    x, y, _ = farthest_error_click(np.zeros_like(target), target)
    assert y in (4, 5) and 4 <= x <= 25


def test_noisy_box_noise_is_bounded_and_scaled_by_the_side():
    box = np.array([100.0, 200.0, 500.0, 260.0])  # 400 wide, 60 high
    rng = np.random.default_rng(3)
    boxes = np.array([noisy_box(box, rng, (1024, 1024)) for _ in range(3000)])
    delta = boxes - box
    assert np.abs(delta).max() <= 20.0 + 1e-9
    # x noise: std 40 clipped at 20 → most draws hit the clip; y noise: std 6, clip rarely reached.
    assert np.mean(np.abs(delta[:, 0]) == 20.0) > 0.5
    assert 5.0 < delta[:, 1].std() < 7.0
    assert np.all(boxes[:, 0] <= boxes[:, 2]) and np.all(boxes[:, 1] <= boxes[:, 3])


def test_noisy_box_stays_inside_the_image():
    rng = np.random.default_rng(4)
    boxes = np.array([noisy_box(np.array([0.0, 0.0, 99.0, 49.0]), rng, (50, 100)) for _ in range(500)])
    assert boxes.min() >= 0 and boxes[:, [0, 2]].max() <= 99 and boxes[:, [1, 3]].max() <= 49


def test_bounding_box_is_tight():
    assert bounding_box(square(30, 30, 5, 9, 11, 20)).tolist() == [11, 5, 19, 8]
    with pytest.raises(ValueError):
        bounding_box(np.zeros((3, 3), bool))


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        farthest_error_click(np.zeros((3, 3), bool), np.zeros((3, 4), bool))
