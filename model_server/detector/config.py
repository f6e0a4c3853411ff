"""What the detector is given: its hyperparameters (`DetectorConfig`), its images (`DetectionSample`)
and the checks every entry point runs on them, so a malformed input fails with a ValueError naming it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

EMBEDDING_SHAPE = (256, 64, 64)
GRID = 64
STRIDE = 16  # model-frame pixels per grid cell (1024 / 64)
MODEL_SIZE = GRID * STRIDE


@dataclass(frozen=True)
class DetectorConfig:
    """Hyperparameters of the head and its training (stored with the weights).

    Attributes:
        width: channels of the head's convolutions.
        depth: number of 3x3 convolutions after the 1x1 projection.
        epochs: passes over the training images.
        batch_size: images per optimiser step.
        lr: AdamW learning rate (cosine-decayed to 5% over the run).
        weight_decay: AdamW weight decay.
        center_ratio: a cell is positive when its centre is within this share of the box's half
            width/height from the box centre.
        hflip: also train on horizontally mirrored embeddings (only images filling the 1024 width).
        calibration_fraction: share of training images held out of the head's training to fit the
            score calibration (at least one image).
        min_boxes: fewer training boxes than this is refused (ValueError).
        max_detections: detections kept per image after NMS.
        seed: seeds the split, initialisation and batch order.
        device: "cpu", "cuda", ... where training and inference run.
    """

    width: int = 64
    depth: int = 3
    epochs: int = 40
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    center_ratio: float = 0.5
    hflip: bool = True
    calibration_fraction: float = 0.2
    min_boxes: int = 10
    max_detections: int = 100
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DetectorConfig:
        """A config from a plain dict; unknown keys or out-of-range values raise ValueError."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown detector config keys: {', '.join(unknown)}")
        config = cls(**values)
        positive_ints = ("width", "depth", "epochs", "batch_size", "min_boxes", "max_detections")
        for name in positive_ints:
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"detector config {name} must be a positive integer, got {value!r}")
        if not 0.0 < config.lr < 1.0 or config.weight_decay < 0:
            raise ValueError(
                f"detector config lr must be in (0, 1) and weight_decay >= 0, got {config.lr}, {config.weight_decay}"
            )
        if not 0.0 < config.center_ratio <= 1.0 or not 0.0 < config.calibration_fraction < 1.0:
            raise ValueError("detector config center_ratio must be in (0, 1] and calibration_fraction in (0, 1)")
        return config

    def torch_device(self) -> torch.device:
        """`device` as a torch device; "cuda" falls back to the CPU on a machine without one."""
        return torch.device(self.device if self.device != "cuda" or torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class DetectionSample:
    """One image as the detector sees it.

    Attributes:
        embedding: 256x64x64 (or 1x256x64x64) float16/float32, SAM's image embedding.
        original_size: (h, w) of the image in pixels.
        input_size: (h, w) of the image resized into the 1024 model frame.
        boxes: Kx4 float XYXY boxes in the original frame (K may be 0 for evaluation).
    """

    embedding: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    boxes: np.ndarray


SampleLike = DetectionSample | tuple[Any, Any, Any, Any]
"""A `DetectionSample` or the tuple (embedding, original_size, input_size, boxes) of its fields."""


def embedding_tensor(embedding: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A 256x64x64 (or 1x256x64x64) float array or tensor → 256x64x64 tensor; ValueError otherwise."""
    tensor = embedding if isinstance(embedding, torch.Tensor) else torch.as_tensor(np.asarray(embedding))
    if (
        not tensor.is_floating_point()
        or tuple(tensor.shape[-3:]) != EMBEDDING_SHAPE
        or tensor.ndim not in (3, 4)
        or (tensor.ndim == 4 and tensor.shape[0] != 1)
    ):
        raise ValueError(
            f"embedding must be a float 256x64x64 or 1x256x64x64 array, got {tuple(tensor.shape)} {tensor.dtype}"
        )
    return tensor.reshape(EMBEDDING_SHAPE)


def check_sizes(original_size: Any, input_size: Any) -> None:
    """ValueError unless both are (h, w) pairs of positive integers and input_size fits the 1024 frame."""
    for name, size in (("original_size", original_size), ("input_size", input_size)):
        if len(size) != 2 or not all(int(v) == v and v > 0 for v in size):
            raise ValueError(f"{name} must be two positive integers (h, w), got {size!r}")
    if max(input_size) > MODEL_SIZE:
        raise ValueError(f"input_size {tuple(input_size)} exceeds the {MODEL_SIZE} model frame")


def as_sample(sample: SampleLike, index: int) -> DetectionSample:
    """The checked `DetectionSample` of `sample` (int sizes, Kx4 float32 boxes); ValueError naming
    sample `index` when it is malformed."""
    if not isinstance(sample, DetectionSample):
        if len(sample) != 4:
            raise ValueError(f"sample {index}: expected (embedding, original_size, input_size, boxes)")
        sample = DetectionSample(*sample)
    embedding_tensor(sample.embedding)
    original = tuple(int(v) for v in sample.original_size)
    inner = tuple(int(v) for v in sample.input_size)
    check_sizes(original, inner)
    boxes = (
        np.asarray(sample.boxes, dtype=np.float32).reshape(-1, 4)
        if np.size(sample.boxes)
        else np.zeros((0, 4), np.float32)
    )
    if not np.isfinite(boxes).all() or (boxes[:, 2:] <= boxes[:, :2]).any():
        raise ValueError(f"sample {index}: boxes must be finite XYXY with x0 < x1 and y0 < y1")
    return DetectionSample(sample.embedding, (original[0], original[1]), (inner[0], inner[1]), boxes)
