"""The api's samples, which name stored objects, read into the library's sample types.

Detector training and evaluation, decoder evaluation and both kinds of retraining take samples that
hold storage keys and COCO RLEs (`api.DetectorSample`, `api.MaskSample`, `api.ImageMaskSample`); the
library trains on arrays. The reading is one job shared by those operations, so a malformed sample
is refused the same way by each: a ValueError naming the sample's index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model_server import api
from model_server.service import stored
from model_server.storage import Storage


def detection_samples(storage: Storage, samples: Sequence[api.DetectorSample]) -> list[tuple[Any, Any, Any, Any]]:
    """(embedding, original size, input size, Nx4 boxes) of each detector sample."""
    embeddings = _EmbeddingReader(storage)
    out = []
    for sample in samples:
        values, original, inner = embeddings.read(sample.embedding.key)
        out.append((values, original, inner, np.asarray(sample.boxes, dtype=np.float32).reshape(-1, 4)))
    return out


def mask_samples(storage: Storage, samples: Sequence[api.MaskSample]) -> list[Any]:
    """`samples.MaskSample`s of `api.MaskSample`s: each stored embedding read once, shared by its masks."""
    from model_server.samples import MaskSample

    if not samples:
        raise ValueError("no samples given")
    embeddings = _EmbeddingReader(storage)
    out = []
    for i, sample in enumerate(samples):
        values, original, inner = embeddings.read(sample.embedding.key)
        mask = _decode_rle(sample.rle, i)
        try:
            out.append(MaskSample(values, original, inner, mask))
        except ValueError as error:
            raise ValueError(f"sample {i}: {error}") from None
    return out


def image_samples(storage: Storage, samples: Sequence[Any], mode: str) -> list[Any]:
    """`training.ImageSample`s of `api.ImageMaskSample`s: each stored image read once (as `embed`
    reads it, EXIF orientation applied) and resized into the 1024 frame once, shared by its masks.
    `mode` is the round's encoder_mode, named when a sample is of another type."""
    from model_server.training import ImageSample
    from model_server.transforms import resize_longest_side

    if not samples:
        raise ValueError("no samples given")
    resized: dict[str, tuple[np.ndarray, tuple[int, int]]] = {}
    out = []
    for i, sample in enumerate(samples):
        if not isinstance(sample, api.ImageMaskSample):
            raise ValueError(
                f"encoder_mode {mode!r} trains the image encoder on the images: every sample must be an "
                f"ImageMaskSample (image_key, rle), but sample {i} is a {type(sample).__name__}"
            )
        if not isinstance(sample.image_key, str):
            raise ValueError(f"sample {i}: image_key must be a storage key, got {sample.image_key!r}")
        if sample.image_key not in resized:
            image = stored.read_image(storage, sample.image_key)
            resized[sample.image_key] = (resize_longest_side(image), (image.shape[0], image.shape[1]))
        pixels, original = resized[sample.image_key]
        mask = _decode_rle(sample.rle, i)
        if mask.shape != original:
            raise ValueError(
                f"sample {i}: mask of {mask.shape[0]}x{mask.shape[1]} does not match image "
                f"{sample.image_key!r} of {original[0]}x{original[1]}"
            )
        try:
            out.append(ImageSample(pixels, original, pixels.shape[:2], mask))
        except ValueError as error:
            raise ValueError(f"sample {i}: {error}") from None
    return out


def _decode_rle(rle: Any, i: int) -> np.ndarray:
    """The HxW bool mask of sample `i`'s COCO RLE (ValueError naming the sample when malformed)."""
    from model_server.rle import coco_decode

    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"sample {i}: rle must be a COCO RLE {{'size': [h, w], 'counts': ...}}")
    try:
        return coco_decode(dict(rle))
    except (TypeError, ValueError) as error:
        raise ValueError(f"sample {i}: unreadable RLE ({error})") from None


class _EmbeddingReader:
    """Stored embeddings read once per call (the masks of one image share its embedding)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._seen: dict[str, tuple[np.ndarray, tuple[int, int], tuple[int, int]]] = {}

    def read(self, key: str) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        if key not in self._seen:
            self._seen[key] = stored.read_embedding(self.storage, key)
        return self._seen[key]
