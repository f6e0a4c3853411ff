"""Small-region clean-up of one binary mask: the automatic generator's `min_mask_region_area` step.

Holes smaller than the threshold are filled and islands smaller than it dropped, 8-connected, as
the official generator does (which labels the whole image with OpenCV; we label only around the
mask where that gives the same answer, see `remove_small_regions`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def remove_small_regions(mask: np.ndarray, area_threshold: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (mode "holes") or drop islands (mode "islands") smaller than `area_threshold` pixels.

    mask HxW bool in any frame → (mask HxW bool, whether it changed). Regions are 8-connected. For
    islands, when every island is small the largest one is kept. Work happens inside the mask's
    bounding box (plus a one-pixel ring of background) unless a background region that touches
    the box could itself be smaller than the threshold, in which case the whole mask is labelled.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(ys) == 0:
        return mask, False
    h, w = mask.shape
    y0, y1, x0, x1 = ys[0], ys[-1], xs[0], xs[-1]
    strips = [y0 * w, (h - 1 - y1) * w, x0 * h, (w - 1 - x1) * h]  # outside strips, full span
    if mode == "holes" and min((s for s in strips if s > 0), default=area_threshold) < area_threshold:
        y0, y1, x0, x1 = 0, h - 1, 0, w - 1
    top, left = max(y0 - 1, 0), max(x0 - 1, 0)
    window = mask[top : min(y1 + 2, h), left : min(x1 + 2, w)]
    working = ~window if mode == "holes" else window
    labels, n = ndimage.label(working, structure=_EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = sizes < area_threshold
    if mode == "holes":
        # Background touching the ring continues into an outside strip of at least the threshold:
        # never a hole. (Window sides on the image edge have no ring and are labelled as they are.)
        ring = [
            side
            for side, present in (
                (labels[0], y0 > 0),
                (labels[-1], y1 < h - 1),
                (labels[:, 0], x0 > 0),
                (labels[:, -1], x1 < w - 1),
            )
            if present
        ]
        if ring:
            border = np.concatenate(ring)
            small[np.unique(border[border > 0]) - 1] = False
    if not small.any():
        return mask, False
    if mode == "holes":
        filled = np.isin(labels, np.flatnonzero(small) + 1)
        new_window = window | filled
    else:
        keep = np.flatnonzero(~small) + 1
        if len(keep) == 0:
            keep = np.array([int(np.argmax(sizes)) + 1])
        new_window = np.isin(labels, keep)
    out = mask.copy()
    out[top : top + window.shape[0], left : left + window.shape[1]] = new_window
    return out, True
