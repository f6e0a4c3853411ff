"""Simulated clicks: what an annotator would click, derived from the ground truth.

The one place prompts are simulated: `training.loop` draws its prompts here and `evaluation`
clicks here, so a trained model is measured with the clicks it was trained on. Two simulators share
the error-region logic:

* training (paper App. A): the first prompt is a uniformly drawn foreground point or a noisy box
  with equal probability; every later point is drawn *uniformly* from the error region of the
  previous prediction, foreground where the model missed the object (false negative), background
  where it spilled over (false positive). Randomness keeps the decoder from learning one click path.
* evaluation (the standard interactive-segmentation protocol, RITM/SAM): the next click is the
  error-region point *farthest from the region's boundary*, deterministic so numbers are
  comparable across runs and papers. The first click (empty prediction) is therefore the object's
  most interior point.

All masks here are 2-D bool arrays in one frame (the caller's: original pixels for evaluation,
the 256x256 low-res grid for training); points come back as (x, y) = (column, row) indices in that
frame. An optional `valid` mask restricts the error region (e.g. the padding of the model frame).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FOREGROUND = 1
BACKGROUND = 0


def _check_pair(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None) -> None:
    if pred.ndim != 2 or pred.shape != target.shape or (valid is not None and valid.shape != pred.shape):
        raise ValueError(
            f"pred, target (and valid) must be HxW masks of one shape, got {pred.shape}, {target.shape}"
            + ("" if valid is None else f", {valid.shape}")
        )


def error_regions(
    pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(false negatives, false positives), both HxW bool, of an HxW bool prediction vs. the target."""
    _check_pair(pred, target, valid)
    pred, target = pred.astype(bool), target.astype(bool)
    false_neg, false_pos = target & ~pred, pred & ~target
    if valid is not None:
        false_neg &= valid
        false_pos &= valid
    return false_neg, false_pos


def uniform_point(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A pixel (x, y) of the HxW bool `mask` drawn uniformly; ValueError if the mask is empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("cannot sample a point from an empty mask")
    i = rng.integers(len(ys))
    return int(xs[i]), int(ys[i])


def bounding_box(mask: np.ndarray) -> np.ndarray:
    """Tight XYXY box (float64, 4) of the HxW bool `mask` in pixel-index coordinates, inclusive."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("an empty mask has no bounding box")
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def noisy_box(
    box: np.ndarray,
    rng: np.random.Generator,
    bounds: tuple[int, int],
    noise_fraction: float = 0.1,
    max_noise: float = 20.0,
) -> np.ndarray:
    """Jitter each coordinate of an XYXY `box` (4,) as the paper does: Gaussian noise with std
    `noise_fraction` of the box's side along that axis, clipped to ±`max_noise` pixels; the result
    is kept inside [0, w-1] x [0, h-1] (`bounds` = (h, w)) and ordered (x0 <= x1, y0 <= y1)."""
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,):
        raise ValueError(f"box must be XYXY with shape (4,), got {box.shape}")
    width, height = box[2] - box[0], box[3] - box[1]
    std = noise_fraction * np.array([width, height, width, height])
    noise = np.clip(rng.normal(size=4) * std, -max_noise, max_noise)
    h, w = bounds
    out = np.clip(box + noise, 0, [w - 1, h - 1, w - 1, h - 1])
    x0, x1 = sorted((out[0], out[2]))
    y0, y1 = sorted((out[1], out[3]))
    return np.array([x0, y0, x1, y1])


def random_error_click(
    pred: np.ndarray, target: np.ndarray, rng: np.random.Generator, valid: np.ndarray | None = None
) -> tuple[int, int, int] | None:
    """Training click: (x, y, label) drawn uniformly from the whole error region, label 1 on a false
    negative and 0 on a false positive; None when the prediction is already exact."""
    false_neg, false_pos = error_regions(pred, target, valid)
    ys, xs = np.nonzero(false_neg | false_pos)
    if len(ys) == 0:
        return None
    i = rng.integers(len(ys))
    x, y = int(xs[i]), int(ys[i])
    return x, y, FOREGROUND if false_neg[y, x] else BACKGROUND


def farthest_error_click(
    pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None
) -> tuple[int, int, int] | None:
    """Evaluation click: the point farthest from the boundary of the larger error (by that distance),
    (x, y, label) with label 1 for missed foreground, 0 for spill-over; None when exact.

    The image border counts as a boundary (the masks are padded with zeros before the distance
    transform), as in the standard protocol; ties go to the first pixel in raster order.
    """
    false_neg, false_pos = error_regions(pred, target, valid)
    best: tuple[float, int, int, int] | None = None
    for region, label in ((false_neg, FOREGROUND), (false_pos, BACKGROUND)):
        if not region.any():
            continue
        distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
        if best is None or distance[y, x] > best[0]:
            best = (float(distance[y, x]), int(x), int(y), label)
    return None if best is None else best[1:]
