"""Training samples that carry their image, for rounds that train the image encoder.

An `ImageSample` holds the image as the encoder sees it (longest side resized to 1024, uint8 RGB,
`transforms.resize_longest_side`; no augmentation, as the paper's training) next to the same fields
as `samples.MaskSample`, so the loop builds targets and prompts from either. Masks of one image
share the one array (`image_samples`), and `embed_image_samples` encodes each image once: that is
how the round's held-out evaluation gets embeddings from the encoder it has just trained.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..sam import Sam
from ..samples import MaskSample
from ..transforms import preprocess_shape, resize_longest_side


@dataclass
class ImageSample:
    """One object mask of one image, with the image itself.

    image: h'xw'x3 uint8 RGB, the image resized so that (h', w') == input_size.
    original_size, input_size, mask: as in `samples.MaskSample`.
    """

    image: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    mask: np.ndarray

    def __post_init__(self) -> None:
        self.original_size = (int(self.original_size[0]), int(self.original_size[1]))
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.input_size != preprocess_shape(*self.original_size):
            raise ValueError(f"input_size {self.input_size} is not the 1024-resize of {self.original_size}")
        if self.image.dtype != np.uint8 or self.image.shape != (*self.input_size, 3):
            raise ValueError(
                f"image must be uint8 {self.input_size[0]}x{self.input_size[1]}x3 (resized to the model frame), "
                f"got {self.image.dtype} {tuple(self.image.shape)}"
            )
        if self.mask.shape != self.original_size:
            raise ValueError(f"mask shape {self.mask.shape} differs from original_size {self.original_size}")
        self.mask = self.mask.astype(bool, copy=False)
        if not self.mask.any():
            raise ValueError("mask is empty: an object mask needs at least one pixel")

    @property
    def area_fraction(self) -> float:
        return float(self.mask.mean())


def image_samples(items: Iterable[tuple[np.ndarray, Sequence[np.ndarray]]]) -> list[ImageSample]:
    """One sample per non-empty mask of each (HxWx3 uint8 RGB image, its HxW masks); the resized
    image is stored once per image."""
    samples = []
    for image, masks in items:
        resized = resize_longest_side(np.asarray(image, dtype=np.uint8))
        size = (image.shape[0], image.shape[1])
        samples += [ImageSample(resized, size, resized.shape[:2], np.asarray(m)) for m in masks if np.asarray(m).any()]
    return samples


def pixels(model: Sam, samples: Sequence[ImageSample]) -> torch.Tensor:
    """Bx3x1024x1024 encoder input of the samples' images (`Sam.preprocess`, one image at a time
    since their sizes differ), on the model's device."""
    return torch.cat(
        [model.preprocess(torch.from_numpy(s.image).permute(2, 0, 1)[None].to(model.device)) for s in samples]
    )


@torch.no_grad()
def embed_image_samples(model: Sam, samples: Sequence[ImageSample], batch_size: int = 1) -> list[MaskSample]:
    """`MaskSample`s (float16 embeddings, as the product stores them) from `model`'s encoder; each
    distinct image array is encoded once."""
    encoded: dict[int, np.ndarray] = {}
    firsts = list({id(s.image): s for s in samples}.values())
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(firsts), batch_size):
            chunk = firsts[start : start + batch_size]
            out = model.image_encoder(pixels(model, chunk).to(model.dtype))
            for s, e in zip(chunk, out):
                encoded[id(s.image)] = e.to(torch.float16).cpu().numpy()
    finally:
        model.train(was_training)
    return [MaskSample(encoded[id(s.image)], s.original_size, s.input_size, s.mask) for s in samples]
