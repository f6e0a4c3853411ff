"""One `MaskSample` per object mask, holding its image's cached SAM embedding: what training and
evaluation both read.

Training and evaluation never run the image encoder: the embedding of each image is computed
once (by the embedding job in the product, by `embed_samples` here for tests and benchmarks) and
every mask of the image shares it. That is what makes decoder training affordable on a CPU.
`read_manifest` reads the `images/ masks/ manifest.csv` layout of the evaluation data sets.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .predictor import EMBEDDING_SHAPE, Predictor
from .transforms import preprocess_shape


@dataclass
class MaskSample:
    """One object mask of one image.

    embedding: 256x64x64 float16/float32, the image's SAM embedding (the image encoder's output).
    original_size: (h, w) of the image in pixels.
    input_size: (h, w) once the longest side is resized to 1024 (`transforms.preprocess_shape`).
    mask: HxW bool ground truth in the original frame (H, W = original_size), not empty.
    """

    embedding: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    mask: np.ndarray

    def __post_init__(self) -> None:
        if tuple(self.embedding.shape) != EMBEDDING_SHAPE or not np.issubdtype(self.embedding.dtype, np.floating):
            raise ValueError(
                f"embedding must be a float 256x64x64 array, got {self.embedding.dtype} {tuple(self.embedding.shape)}"
            )
        self.original_size = (int(self.original_size[0]), int(self.original_size[1]))
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.mask.shape != self.original_size:
            raise ValueError(f"mask shape {self.mask.shape} differs from original_size {self.original_size}")
        if self.input_size != preprocess_shape(*self.original_size):
            raise ValueError(f"input_size {self.input_size} is not the 1024-resize of {self.original_size}")
        self.mask = self.mask.astype(bool, copy=False)
        if not self.mask.any():
            raise ValueError("mask is empty: an object mask needs at least one pixel")

    @property
    def area_fraction(self) -> float:
        """Share of the image the mask covers, 0–1."""
        return float(self.mask.mean())


def embed_samples(
    predictor: Predictor,
    items: Iterable[tuple[np.ndarray, Sequence[np.ndarray]]],
    progress: Callable[[int], None] | None = None,
) -> list[MaskSample]:
    """Encode each image once and make one sample per mask.

    items: (image HxWx3 uint8 RGB, masks: HxW bool arrays of that image, original frame); empty
    masks are skipped. Embeddings are kept as float16 (what the product stores). `progress(i)`
    is called after the i-th image (1-based).
    """
    samples = []
    for i, (image, masks) in enumerate(items, start=1):
        predictor.set_image(image)
        encoded, original_size, input_size = predictor.embedding, predictor.original_size, predictor.input_size
        assert encoded is not None and original_size is not None and input_size is not None  # set by set_image
        embedding = encoded[0].to(torch.float16).cpu().numpy()
        for mask in masks:
            if np.asarray(mask).any():
                samples.append(MaskSample(embedding, original_size, input_size, np.asarray(mask, dtype=bool)))
        if progress is not None:
            progress(i)
    return samples


def read_manifest(root: Path) -> list[tuple[Path, list[Path]]]:
    """(image path, its mask paths) per image of a data folder with `manifest.csv` (columns image,
    mask, ...), in the manifest's order."""
    by_image: dict[str, list[Path]] = {}
    with open(root / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_image.setdefault(row["image"], []).append(root / row["mask"])
    return [(root / image, masks) for image, masks in by_image.items()]


def load_image_and_masks(
    image_path: Path, mask_paths: Sequence[Path], max_side: int | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """An RGB image (HxWx3 uint8) and its binary masks (HxW bool, > 127 is foreground), optionally
    downscaled so the longest side is at most `max_side` (masks by nearest neighbour)."""
    image = Image.open(image_path).convert("RGB")
    masks = [Image.open(p).convert("L") for p in mask_paths]
    if max_side is not None and max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        masks = [m.resize(size, Image.Resampling.NEAREST) for m in masks]
    return np.asarray(image), [np.asarray(m) > 127 for m in masks]
