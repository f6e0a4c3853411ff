"""The orders of the selection strategies over pooled image embeddings: pure numpy, no database.

Vectors are the model side's pooled embeddings (`model_server.selection.pool_embedding`: unit
length), so the squared distance of two is 2 - 2·cosine and a dot product is their similarity.

**k-center greedy** (`greedy_order`): the next image is the candidate farthest from everything
already chosen (the annotated images, then the ones picked before it), so a near-duplicate of a chosen
frame is at distance ~0 and comes only after every distinct image. The whole order is computed
once (O(N²·D): ~5 s for 10 000 images of 256 floats) and stored as ranks: annotators who follow it
grow the chosen set exactly as the greedy pass assumed, so the order stays the k-center order
without recomputing it per claim. With `weights` (the *mix* strategy) the pick is the candidate with
the largest ``distance · weight``: uncertain images first among the distinct ones, a near-duplicate
still last (its distance, ~0, cancels any weight).
"""

from __future__ import annotations

import hashlib

import numpy as np

WEIGHT_FLOOR = 0.05  # a sure image (weight ~0) still counts by its distance in the mix


def greedy_order(
    candidates: np.ndarray, chosen: np.ndarray | None = None, weights: np.ndarray | None = None
) -> list[int]:
    """Indices of `candidates` (NxD float, unit rows) in k-center greedy order.

    chosen: MxD vectors already annotated (None or 0 rows: the first pick is the candidate farthest
    from the candidates' mean, the most atypical image, or with `weights` the heaviest); weights: N non-negative factors of each
    candidate's distance (the mix), None for pure diversity. Ties go to the lower index (upload order).
    """
    points = np.asarray(candidates, dtype=np.float64)
    n = len(points)
    if n == 0:
        return []
    factor = np.ones(n) if weights is None else WEIGHT_FLOOR + np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    if chosen is not None and len(chosen):
        # Nearest chosen vector per candidate, in blocks so that N x M never lives in memory at once.
        nearest = np.full(n, np.inf)
        reference = np.asarray(chosen, dtype=np.float64)
        for start in range(0, len(reference), 1024):
            block = reference[start : start + 1024]
            d = ((points[:, None, :] - block[None, :, :]) ** 2).sum(axis=2)
            nearest = np.minimum(nearest, d.min(axis=1))
    elif weights is not None:
        nearest = np.ones(n)  # nothing chosen yet: the mix starts from its most uncertain image
    else:
        nearest = ((points - points.mean(axis=0)) ** 2).sum(axis=1)
    order: list[int] = []
    taken = np.zeros(n, dtype=bool)
    for _ in range(n):
        gain = np.where(taken, -np.inf, nearest * factor)
        pick = int(np.argmax(gain))
        order.append(pick)
        taken[pick] = True
        nearest = np.minimum(nearest, ((points - points[pick]) ** 2).sum(axis=1))
    return order


def random_order(image_ids: list[int], seed: int) -> list[int]:
    """Positions of `image_ids` in the project's seeded random order: each image's place depends only
    on (seed, id), so images added later fall in between without reshuffling the others."""
    keys = [hashlib.sha256(f"{seed}/{image_id}".encode()).digest()[:8] for image_id in image_ids]
    return sorted(range(len(image_ids)), key=lambda i: keys[i])


def near_duplicates(
    vectors: np.ndarray, ids: np.ndarray, others: np.ndarray, other_ids: np.ndarray, threshold: float
) -> list[tuple[int, float] | None]:
    """For each row of `vectors` (NxD unit, the images `ids`), (id, cosine similarity) of the most
    similar of `others` (MxD unit, images `other_ids`) uploaded before it (a lower id), if that
    similarity is at least `threshold`; else None. The first upload of a scene is never the flagged one."""
    if len(vectors) == 0 or len(others) == 0:
        return [None] * len(vectors)
    similarity = np.asarray(vectors, dtype=np.float64) @ np.asarray(others, dtype=np.float64).T
    similarity[np.asarray(other_ids)[None, :] >= np.asarray(ids)[:, None]] = -np.inf
    best = similarity.argmax(axis=1)
    found: list[tuple[int, float] | None] = []
    for row, column in enumerate(best):
        value = float(similarity[row, column])
        found.append((int(other_ids[column]), value) if value >= threshold else None)
    return found
