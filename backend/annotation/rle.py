"""Checking a client's COCO RLE before it reaches the database.

pycocotools decodes run-length counts without bounds checks, so counts that overrun the image would
write past its buffer: we parse and check the runs ourselves first (they must be non-negative and sum
to exactly h*w), and only then let pycocotools decode, measure and re-encode the mask canonically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_util


class InvalidRle(ValueError):
    """The RLE cannot be a mask of this image; the message says why."""


@dataclass(frozen=True)
class CheckedMask:
    rle: dict[str, Any]  # canonical compressed COCO RLE {size: [h, w], counts: str}
    bbox: list[float]  # [x, y, w, h] in image pixels
    area: int  # foreground pixels


def parse_counts(counts: str) -> list[int]:
    """Runs of a compressed COCO counts string (column-major, starting with zeros)."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(counts):
                raise InvalidRle("counts string ends in the middle of a number")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise InvalidRle(f"counts has an invalid character {counts[p]!r} at position {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def check_rle(rle: dict[str, Any], height: int, width: int) -> CheckedMask:
    """Validate `rle` ({size: [h, w], counts: str | list[int]}) as a mask of an image `height` x `width`.

    Accepts the compressed string form and the uncompressed list of runs; raises `InvalidRle` with a
    message fit for the client when the size differs from the image, the counts do not decode, the
    runs do not cover the image exactly, or the mask is empty.
    """
    size = rle.get("size")
    if not (isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise InvalidRle("rle.size must be [height, width]")
    if list(size) != [height, width]:
        raise InvalidRle(f"rle.size {list(size)} does not match the image size [{height}, {width}] (height, width)")
    counts = rle.get("counts")
    if isinstance(counts, str):
        runs = parse_counts(counts)
    elif isinstance(counts, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
        runs = counts
    else:
        raise InvalidRle("rle.counts must be a COCO compressed string or a list of run lengths")
    if any(r < 0 for r in runs):
        raise InvalidRle("rle.counts decodes to a negative run length")
    if sum(runs) != height * width:
        raise InvalidRle(f"rle.counts covers {sum(runs)} pixels, the image has {height * width} ({height}x{width})")
    if not any(runs[1::2]):
        raise InvalidRle("the mask is empty")
    if isinstance(counts, list):
        encoded = mask_util.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    else:
        encoded = {"size": [height, width], "counts": counts.encode("ascii")}
    # Re-encode from the pixels: equal masks get equal strings whatever form the client sent.
    pixels = mask_util.decode(encoded)
    canonical = mask_util.encode(np.asfortranarray(pixels))
    return CheckedMask(
        rle={"size": [height, width], "counts": canonical["counts"].decode("ascii")},
        bbox=[float(v) for v in mask_util.toBbox(canonical)],
        area=int(mask_util.area(canonical)),
    )
