"""A mask's pixels in their stored form: canonical COCO RLE, with its area and box, checked first.

Every mask row is written from a `CheckedMask` (`checked_mask`), whatever the writer holds: an
annotator's RLE (compressed or runs), a generator's record, or a binary array. Its RLE is the one
pycocotools writes for the pixels, so equal masks have equal strings, and its area and box are
pycocotools' figures (COCO's box: width x_max - x_min + 1).

pycocotools decodes run-length counts without bounds checks, so counts that overrun the image would
write past its buffer: we parse and check the runs ourselves first (they must be non-negative and sum
to exactly h*w), and only then write their canonical form (`canonical_runs`) and let pycocotools
compress and measure it.

The cost is bounded before any parsing: the counts may be no longer than a mask of the image can
need (`max_counts_chars`, `max_runs`), and the string is parsed with numpy in linear time, so an
8 MB string for a small image is refused at once and a legitimate one costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_util

# A run length of an image within our pixel limits fits in 35 bits: at most 7 characters of 5 bits.
MAX_CHARS_PER_RUN = 7


class InvalidRle(ValueError):
    """The RLE cannot be a mask of this image; the message says why."""


class EmptyMask(InvalidRle):
    """The mask has no foreground pixel (a client's is refused; a generator's is skipped)."""


@dataclass(frozen=True)
class CheckedMask:
    rle: dict[str, Any]  # canonical compressed COCO RLE {size: [h, w], counts: str}
    bbox: list[float]  # [x, y, w, h] in image pixels
    area: int  # foreground pixels


def max_runs(height: int, width: int) -> int:
    """Runs of an h x w mask: every run but the first (zeros, possibly empty) covers >= 1 pixel."""
    return height * width + 1


def max_counts_chars(height: int, width: int) -> int:
    """Characters of a compressed counts string of an h x w mask.

    Runs from the fourth on are written as the difference from the run two before; a difference of
    two runs of at least one pixel takes no more characters than the larger run, and each run is the
    larger one of at most two differences; a run of r >= 1 pixels takes at most r characters. So all
    runs take at most 2*h*w characters, plus one for an empty first run.
    """
    return 2 * height * width + 1


def parse_counts(counts: str) -> np.ndarray:
    """Runs (int64) of a compressed COCO counts string (column-major, starting with zeros).

    The format of pycocotools' ``rleFrString``: each number is 5-bit groups, low first, 0x20 meaning
    "more follows" and 0x10 in the last group the sign; from the fourth number on, the run two
    before is added. Vectorised, so its cost is a few numpy passes over the string.
    """
    if not counts.isascii():
        position = next(i for i, ch in enumerate(counts) if not ch.isascii())
        raise InvalidRle(f"counts has an invalid character {counts[position]!r} at position {position}")
    codes = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    bad = np.flatnonzero((codes < 0) | (codes >= 64))
    if bad.size:
        raise InvalidRle(f"counts has an invalid character {counts[bad[0]]!r} at position {bad[0]}")
    if codes.size == 0:
        return codes
    last = (codes & 0x20) == 0  # the last character of a number
    if not last[-1]:
        raise InvalidRle("counts string ends in the middle of a number")
    number = np.concatenate(([0], np.cumsum(last)[:-1]))  # which number each character belongs to
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    digit = np.arange(codes.size) - starts[number]  # position of the character within its number
    if digit.max() >= MAX_CHARS_PER_RUN:
        raise InvalidRle(f"counts has a number longer than {MAX_CHARS_PER_RUN} characters")
    # Sums of at most 35-bit numbers: exact in float64, and bincount is far faster than np.add.at.
    values = np.bincount(number, weights=(codes & 0x1F) << (5 * digit), minlength=starts.size).astype(np.int64)
    ends = np.flatnonzero(last)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (digit[ends][negative] + 1))
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])  # odd runs: each adds the one two before (from the fourth)
    runs[2::2] = np.cumsum(values[2::2])  # even runs from the third likewise; the first stands alone
    return runs


def check_rle(rle: dict[str, Any], height: int, width: int) -> CheckedMask:
    """Validate `rle` ({size: [h, w], counts: str | list[int]}) as a mask of an image `height` x `width`.

    Accepts the compressed string form and the uncompressed list of runs; raises `InvalidRle` with a
    message fit for the client when the size differs from the image, the counts are longer than any
    mask of the image needs, do not decode, the runs do not cover the image exactly, or the mask is
    empty.
    """
    size = rle.get("size")
    if not (isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise InvalidRle("rle.size must be [height, width]")
    if list(size) != [height, width]:
        raise InvalidRle(f"rle.size {list(size)} does not match the image size [{height}, {width}] (height, width)")
    counts = rle.get("counts")
    if isinstance(counts, str):
        if len(counts) > max_counts_chars(height, width):
            raise InvalidRle(
                f"rle.counts has {len(counts)} characters; a mask of a {height}x{width} image "
                f"needs at most {max_counts_chars(height, width)}"
            )
        runs = parse_counts(counts)
    elif isinstance(counts, list):
        if len(counts) > max_runs(height, width):
            raise InvalidRle(
                f"rle.counts has {len(counts)} runs; a mask of a {height}x{width} image "
                f"has at most {max_runs(height, width)}"
            )
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            raise InvalidRle("rle.counts must be a COCO compressed string or a list of run lengths")
        runs = np.asarray(counts, dtype=object)  # arbitrary Python ints: no overflow before the checks
    else:
        raise InvalidRle("rle.counts must be a COCO compressed string or a list of run lengths")
    if (runs < 0).any():
        raise InvalidRle("rle.counts decodes to a negative run length")
    total = int(runs.sum())
    if total != height * width:
        raise InvalidRle(f"rle.counts covers {total} pixels, the image has {height * width} ({height}x{width})")
    if not runs[1::2].any():
        raise EmptyMask("the mask is empty")
    # Equal masks get equal strings whatever form the client sent: the canonical runs, compressed.
    canonical = canonical_runs(runs.astype(np.int64))
    return _measured(mask_util.frPyObjects({"size": [height, width], "counts": canonical}, height, width))


def canonical_runs(runs: np.ndarray) -> list[int]:
    """The runs pycocotools' encoder writes for the pixels that `runs` (checked, int64) describe.

    Runs alternate background and foreground from background; the encoder never writes an empty
    run but the first. So empty runs are dropped, neighbours of the same value merged, and a mask
    starting with foreground gets its empty first run back. Linear in the runs, no pixel decoded
    (decoding and re-encoding a 1024x1024 mask took ~5 ms)."""
    kept = np.flatnonzero(runs > 0)
    values = kept % 2  # 0 background, 1 foreground
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    merged = np.add.reduceat(runs[kept], starts).tolist()
    return merged if values[0] == 0 else [0, *merged]


def from_pixels(pixels: np.ndarray, height: int, width: int) -> CheckedMask:
    """The `CheckedMask` of a binary mask (H x W, bool or 0/1 integers, the image frame).

    Raises `InvalidRle` when its shape is not the image's, `EmptyMask` when no pixel is set."""
    if pixels.shape != (height, width):
        raise InvalidRle(f"mask of shape {list(pixels.shape)} for an image of size [{height}, {width}]")
    if not pixels.any():
        raise EmptyMask("the mask is empty")
    return _measured(mask_util.encode(np.asfortranarray(pixels.astype(np.uint8))))


MaskPixels = CheckedMask | Mapping[str, Any] | np.ndarray


def checked_mask(mask: MaskPixels, height: int, width: int) -> CheckedMask:
    """`mask` of an image `height` x `width` as a `CheckedMask`: one already checked is returned as it
    is (so a caller that filters on the area does not pay twice), an RLE goes through `check_rle`
    (its counts may be bytes, as pycocotools writes them), an array through `from_pixels`."""
    if isinstance(mask, CheckedMask):
        if list(mask.rle["size"]) != [height, width]:
            raise InvalidRle(f"mask of size {mask.rle['size']} for an image of size [{height}, {width}]")
        return mask
    if isinstance(mask, np.ndarray):
        return from_pixels(mask, height, width)
    rle = dict(mask)
    if isinstance(rle.get("counts"), bytes):
        rle["counts"] = rle["counts"].decode("ascii")
    if isinstance(rle.get("size"), list | tuple):
        rle["size"] = [int(v) for v in rle["size"]]  # numpy integers from a generator
    return check_rle(rle, height, width)


def mask_iou(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """IoU of two stored RLEs (str counts) of the same image."""
    return float(iou_matrix([a], [b])[0, 0])


def iou_matrix(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """len(a) x len(b) IoUs of stored RLEs (str counts) of one image, in ONE pycocotools call: it
    works on the runs, no pixel decoded, so 100 new masks against 100 stored take milliseconds."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    encoded = [[{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles] for rles in (a, b)]
    return np.asarray(mask_util.iou(encoded[0], encoded[1], [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def _measured(canonical: dict[str, Any]) -> CheckedMask:
    """A pycocotools-encoded RLE (bytes counts) with its area and box."""
    return CheckedMask(
        rle={"size": [int(v) for v in canonical["size"]], "counts": canonical["counts"].decode("ascii")},
        bbox=[float(v) for v in mask_util.toBbox(canonical)],
        area=int(mask_util.area(canonical)),
    )
