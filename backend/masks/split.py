"""Which images train a model and which measure it: one seeded hash split, for SAM rounds and detectors.

Split by image, never by mask: masks of one image share its embedding, so a mask of a held-out
image seen in training would leak. An image is held out when a seeded hash of its id falls below
the held-out fraction. Hashing (rather than shuffling the current list) keeps an image on the same
side as the project grows, so successive versions are compared on held-out images none of them
trained on. With few images the hash may put too few on one side; then the images nearest the
threshold move over until each side has its minimum (when there are images enough for both).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def unit_hash(seed: int, image_id: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, image id)."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_images(
    image_ids: Iterable[int], held_out_fraction: float, seed: int, *, min_train: int = 1, min_held_out: int = 1
) -> tuple[list[int], list[int]]:
    """(train ids, held-out ids), each sorted.

    With at least ``min_train + min_held_out`` images, each side has at least its minimum; with fewer
    the hash alone decides.

    Raises:
        ValueError: `held_out_fraction` not in (0, 1).
    """
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    ranked = sorted(image_ids, key=lambda i: unit_hash(seed, i))
    n_held = sum(1 for i in ranked if unit_hash(seed, i) < held_out_fraction)
    if len(ranked) >= min_train + min_held_out:
        n_held = min(max(n_held, min_held_out), len(ranked) - min_train)
    return sorted(ranked[n_held:]), sorted(ranked[:n_held])
