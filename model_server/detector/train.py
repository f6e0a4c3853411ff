"""`train_detector`: the head trained on images with boxes, then its scores calibrated on held-out ones."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from .calibrate import fit_calibration_on
from .config import MODEL_SIZE, DetectionSample, DetectorConfig, SampleLike, as_sample, embedding_tensor
from .head import DetectorHead
from .inference import Detector
from .targets import assign_targets, cell_centers, decode_ltrb, encode_ltrb, giou, to_model_frame


def train_detector(
    samples: Sequence[SampleLike],
    config: DetectorConfig | dict[str, Any] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Detector, dict[str, Any]]:
    """Train a detector on images with their object boxes; fit its score calibration.

    Args:
        samples: `DetectionSample`s or tuples (embedding 256x64x64 float, original_size (h, w),
            input_size (h, w), boxes Kx4 XYXY original frame). Images without boxes are negatives.
        config: `DetectorConfig` or a dict of its fields.
        progress: called as ``progress(epoch, epochs, mean loss)`` after every epoch (it may raise to
            abort, e.g. a cancelled job).
        should_stop: polled every epoch; when true, training stops early (metrics say so).

    Returns:
        (the detector, training metrics: loss per epoch, images/boxes used for the head and for
        calibration, calibration a/b and how it was fitted, stopped_early).

    Raises:
        ValueError: no samples, fewer than ``config.min_boxes`` boxes, fewer than 2 images with
            boxes, or a malformed sample.
    """
    config = config if isinstance(config, DetectorConfig) else DetectorConfig.from_dict(config)
    images = [as_sample(s, i) for i, s in enumerate(samples)]
    n_boxes = sum(len(s.boxes) for s in images)
    if not images or n_boxes == 0:
        raise ValueError("no training boxes: a detector needs annotated masks to learn from")
    if n_boxes < config.min_boxes:
        raise ValueError(f"too few training boxes: {n_boxes} given, at least {config.min_boxes} needed")
    with_boxes = [i for i, s in enumerate(images) if len(s.boxes)]
    if len(with_boxes) < 2:
        raise ValueError("at least 2 images with boxes are needed (one is kept out to calibrate the scores)")

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    order = list(range(len(images)))
    rng.shuffle(order)
    n_cal = max(1, round(config.calibration_fraction * len(images)))
    calibration_ids = _calibration_split(order, set(with_boxes), n_cal)
    train_ids = [i for i in order if i not in set(calibration_ids)]

    device = config.torch_device()
    head = DetectorHead(config.width, config.depth).to(device)
    data = _Batches([images[i] for i in train_ids], config, device)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * data.steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    )
    losses: list[float] = []
    stopped = False
    head.train()
    for epoch in range(config.epochs):
        if should_stop is not None and should_stop():
            stopped = True
            break
        total = 0.0
        for embeddings, targets in data.epoch(rng):
            logits, encoded = head(embeddings)
            loss = detection_loss(logits, encoded, targets)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach())
        losses.append(total / data.steps_per_epoch)
        if progress is not None:
            progress(epoch + 1, config.epochs, losses[-1])

    detector = Detector(head, config)
    calibration, how, n_dets = fit_calibration_on(detector, [images[i] for i in calibration_ids])
    detector.calibration = calibration
    metrics = {
        "losses": losses,
        "epochs_done": len(losses),
        "stopped_early": stopped,
        "train_images": len(train_ids),
        "train_boxes": sum(len(images[i].boxes) for i in train_ids),
        "calibration_images": len(calibration_ids),
        "calibration_boxes": sum(len(images[i].boxes) for i in calibration_ids),
        "calibration": {"a": calibration[0], "b": calibration[1], "fitted": how, "detections": n_dets},
    }
    return detector, metrics


def _calibration_split(order: list[int], with_boxes: set[int], n_cal: int) -> list[int]:
    """`n_cal` image indices (in `order`) for calibration, at least one with boxes and leaving one
    with boxes for training."""
    first = next(i for i in order if i in with_boxes)
    chosen = [first] + [i for i in order if i != first][: n_cal - 1]
    if not (with_boxes - set(chosen)):  # keep an image with boxes for training
        chosen = [i for i in chosen if i not in with_boxes or i == first]
    return chosen


class _Batches:
    """Training images stacked once (embeddings float16, targets per cell) and served in batches."""

    def __init__(self, samples: list[DetectionSample], config: DetectorConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        self.embeddings = torch.stack([embedding_tensor(s.embedding).to(torch.float16) for s in samples])
        self.targets = [_image_targets(s, config.center_ratio, flip=False) for s in samples]
        self.flipped = {
            i: _image_targets(s, config.center_ratio, flip=True)
            for i, s in enumerate(samples)
            if config.hflip and s.input_size[1] == MODEL_SIZE
        }
        views = len(samples) + len(self.flipped)
        self.steps_per_epoch = max(1, math.ceil(views / config.batch_size))

    def epoch(self, rng: random.Random) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        views = [(i, False) for i in range(len(self.targets))] + [(i, True) for i in self.flipped]
        rng.shuffle(views)
        size = math.ceil(len(views) / self.steps_per_epoch)
        for start in range(0, len(views), size):
            chunk = views[start : start + size]
            embeddings = torch.stack(
                [self.embeddings[i].flip(-1) if flip else self.embeddings[i] for i, flip in chunk]
            ).to(self.device, torch.float32)
            parts = [self.flipped[i] if flip else self.targets[i] for i, flip in chunk]
            targets = {key: torch.stack([p[key] for p in parts]).to(self.device) for key in parts[0]}
            yield embeddings, targets


def _image_targets(sample: DetectionSample, center_ratio: float, flip: bool) -> dict[str, torch.Tensor]:
    boxes = to_model_frame(sample.boxes, sample.original_size, sample.input_size)
    if flip:  # mirror inside the 1024-wide frame
        boxes = torch.stack([MODEL_SIZE - boxes[:, 2], boxes[:, 1], MODEL_SIZE - boxes[:, 0], boxes[:, 3]], dim=1)
    targets = assign_targets(boxes, sample.input_size, center_ratio)
    targets["encoded"] = encode_ltrb(targets["box"], cell_centers()) * targets["positive"][:, None]
    return targets


def detection_loss(logits: torch.Tensor, encoded: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Focal loss on soft objectness over valid cells + (GIoU + L1 log-distance) on positive cells.

    logits Bx1x64x64, encoded Bx4x64x64 (the head's outputs); targets as `assign_targets` gives them
    per image, stacked (B x GRID*GRID [x4]) plus ``encoded`` (B x GRID*GRID x 4). Normalised by the
    number of positive cells (at least 1).
    """
    b = logits.shape[0]
    logits = logits.reshape(b, -1)
    encoded = encoded.reshape(b, 4, -1).transpose(1, 2)
    valid, positive = targets["valid"], targets["positive"]
    quality = targets["centerness"]
    n_pos = positive.sum().clamp(min=1).float()
    prob = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, quality, reduction="none")
    focal = ((quality - prob).abs() ** 2 * bce * valid).sum() / n_pos
    if not positive.any():
        return focal
    centers = cell_centers().to(logits.device).expand(b, -1, -1)[positive]
    predicted = decode_ltrb(encoded[positive], centers)
    weight = quality[positive]
    giou_loss = ((1 - giou(predicted, targets["box"][positive])) * weight).sum() / weight.sum()
    l1 = ((encoded[positive] - targets["encoded"][positive]).abs().sum(dim=1) * weight).sum() / weight.sum()
    return focal + giou_loss + 0.5 * l1
