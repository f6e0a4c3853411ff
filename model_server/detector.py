"""A one-class ("object") box detector over the cached SAM image embedding: the semi-automatic stage.

Design: an FCOS-style dense head (Tian et al. 2019) on the 256x64x64 image embedding that SAM's
encoder already produced for every image (the backend caches it per image and model version).

* **No second encoder.** The embedding costs nothing more: the detector only adds a 1x1 projection
  to `width` channels and `depth` 3x3 convolutions on the 64x64 grid (about 0.4 GMAC per image at
  width 64, depth 3). That is why it trains in minutes on two CPU cores from a few hundred boxes
  and why the same code runs batched on a GPU (``DetectorConfig.device``), where the encoder, not
  this head, is the cost.
* **Dense, anchor-free.** Each cell of the 64x64 grid (stride 16 in SAM's 1024 model frame) predicts
  an objectness logit and the distances (left, top, right, bottom) from its centre to the box edges,
  encoded as log(distance / 16). No anchors to tune for one class; every cell near an object's
  centre is a positive example, which matters with the few dozen images of a stage-1 project.
  A cell is positive for a box when its centre lies in the box's central part (`center_ratio` of
  its width and height, at least the cell holding the box centre); a cell inside several boxes
  serves the smallest. The objectness target of a positive cell is its centerness (1 at the box
  centre, falling towards the edges), trained with a focal loss on soft targets, so the best-placed
  cell of an object scores highest; boxes train with GIoU plus L1 on the log distances. Cells over
  the padding of the 1024 frame are ignored.
* **Calibrated scores.** Raw objectness ranks cells, it is not a probability that a box is right.
  `train_detector` keeps `calibration_fraction` of the training images out of the head's training,
  detects on them, labels each detection true/false positive at IoU 0.5, and fits Platt scaling
  (``p = sigmoid(a * logit + b)``) by maximum likelihood. `Detector.predict` returns these
  calibrated scores: a score of 0.8 means about 80% of such detections match an object at IoU 0.5
  (on data like the calibration images). With too few calibration detections (or only one class of
  outcome) the identity (a=1, b=0) is kept and the metrics say so.
* **NMS** is `model_server.rle.batched_nms` (the automatic generator's), with one category.

Frames: boxes given to and returned by this module are XYXY in the ORIGINAL image frame (pixels);
inside, they live in the 1024 model frame of the embedding, scaled per axis by input/original size.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .rle import batched_nms, box_iou

EMBEDDING_SHAPE = (256, 64, 64)
GRID = 64
STRIDE = 16  # model-frame pixels per grid cell (1024 / 64)
MODEL_SIZE = GRID * STRIDE
FORMAT = "dataengine-detector-1"
_MIN_DISTANCE = 1.0  # model-frame pixels: log-distance targets are clamped here (tiny boxes)
_MAX_LOG = math.log(2 * MODEL_SIZE / STRIDE)  # predicted log distances are clamped here (exp overflow)


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


# -- geometry -------------------------------------------------------------------------------------


def cell_centers() -> torch.Tensor:
    """(GRID*GRID)x2 float32 (x, y) centres of the grid cells in the model frame, row-major."""
    ys, xs = torch.meshgrid(
        torch.arange(GRID, dtype=torch.float32), torch.arange(GRID, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).add_(0.5).mul_(STRIDE)


def to_model_frame(
    boxes: np.ndarray | torch.Tensor, original_size: tuple[int, int], input_size: tuple[int, int]
) -> torch.Tensor:
    """Kx4 XYXY original-frame boxes → Kx4 float32 XYXY model-frame boxes (per-axis scale)."""
    sx, sy = input_size[1] / original_size[1], input_size[0] / original_size[0]
    return torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4) * torch.tensor([sx, sy, sx, sy])


def to_original_frame(boxes: torch.Tensor, original_size: tuple[int, int], input_size: tuple[int, int]) -> torch.Tensor:
    """Kx4 XYXY model-frame boxes → Kx4 float32 XYXY original-frame boxes, clipped to the image."""
    sx, sy = input_size[1] / original_size[1], input_size[0] / original_size[0]
    boxes = boxes.float() / torch.tensor([sx, sy, sx, sy])
    h, w = original_size
    return torch.stack(
        [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1
    )


def encode_ltrb(boxes: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Nx4 XYXY boxes and Nx2 (x, y) cell centres (model frame) → Nx4 log(distance / STRIDE) targets.

    Distances (left, top, right, bottom) from each centre to its box's edges, clamped below at
    1 model-frame pixel (a centre on or outside an edge of a tiny box).
    """
    distances = torch.cat([centers - boxes[:, :2], boxes[:, 2:] - centers], dim=1)
    return torch.log(distances.clamp(min=_MIN_DISTANCE) / STRIDE)


def decode_ltrb(encoded: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Nx4 log(distance / STRIDE) and Nx2 (x, y) centres (model frame) → Nx4 XYXY model-frame boxes."""
    distances = torch.exp(encoded.clamp(max=_MAX_LOG)) * STRIDE
    return torch.cat([centers - distances[:, :2], centers + distances[:, 2:]], dim=1)


def _valid_cells(input_size: tuple[int, int]) -> torch.Tensor:
    """GRID*GRID bool: cells whose centre lies on the image (not on the 1024 frame's padding)."""
    centers = cell_centers()
    return (centers[:, 0] < input_size[1]) & (centers[:, 1] < input_size[0])


def _giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise generalised IoU of Nx4 XYXY boxes `a` and `b` → N."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    inter = (torch.min(a[:, 2:], b[:, 2:]) - torch.max(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    iou = inter / union.clamp(min=1e-6)
    return iou - (hull - union) / hull.clamp(min=1e-6)


def assign_targets(boxes: torch.Tensor, input_size: tuple[int, int], center_ratio: float) -> dict[str, torch.Tensor]:
    """Per-cell training targets for Kx4 XYXY model-frame boxes of one image.

    Returns (each over the GRID*GRID cells, row-major): ``positive`` bool, ``valid`` bool (not
    padding), ``box`` Nx4 float32 (the assigned box, XYXY model frame; zeros where not positive),
    ``centerness`` float32 (soft objectness target; 0 where not positive).
    """
    centers = cell_centers()
    n = centers.shape[0]
    valid = _valid_cells(input_size)
    positive = torch.zeros(n, dtype=torch.bool)
    assigned = torch.zeros(n, 4)
    centerness = torch.zeros(n)
    if boxes.shape[0] == 0:
        return {"positive": positive, "valid": valid, "box": assigned, "centerness": centerness}
    boxes = boxes.float()
    box_center = (boxes[:, :2] + boxes[:, 2:]) / 2  # Kx2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2
    reach = torch.maximum(half * center_ratio, torch.full_like(half, STRIDE / 2))  # at least the centre cell
    offset = (centers[:, None, :] - box_center[None]).abs()  # NxKx2
    inside = (offset <= reach[None]).all(dim=2)  # NxK
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cost = torch.where(inside, area[None].expand(n, -1), torch.full((n, boxes.shape[0]), float("inf")))
    best_cost, best = cost.min(dim=1)
    positive = torch.isfinite(best_cost) & valid
    assigned = boxes[best] * positive[:, None]
    distances = torch.cat([centers - assigned[:, :2], assigned[:, 2:] - centers], dim=1).clamp(min=0)
    lr, tb = distances[:, [0, 2]], distances[:, [1, 3]]
    ratio = (lr.min(dim=1).values / lr.max(dim=1).values.clamp(min=1e-6)) * (
        tb.min(dim=1).values / tb.max(dim=1).values.clamp(min=1e-6)
    )
    centerness = torch.where(positive, ratio.sqrt().clamp(min=0.1), torch.zeros(n))
    return {"positive": positive, "valid": valid, "box": assigned, "centerness": centerness}


# -- the network ----------------------------------------------------------------------------------


class DetectorHead(nn.Module):
    """256x64x64 embedding → (objectness logits Bx1x64x64, log ltrb distances Bx4x64x64)."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        groups = math.gcd(width, 8)
        layers: list[nn.Module] = [nn.Conv2d(EMBEDDING_SHAPE[0], width, 1), nn.GroupNorm(groups, width), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(groups, width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.objectness = nn.Conv2d(width, 1, 3, padding=1)
        self.box = nn.Conv2d(width, 4, 3, padding=1)
        nn.init.normal_(self.objectness.weight, std=0.01)
        nn.init.constant_(self.objectness.bias, -math.log(99.0))  # prior 1%: stable focal-loss start
        nn.init.normal_(self.box.weight, std=0.01)
        nn.init.constant_(self.box.bias, math.log(2.0))  # 2 cells to every side

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.body(embeddings)
        return self.objectness(x), self.box(x)


class Detector:
    """A trained head plus its score calibration; predicts boxes from one cached embedding.

    Args:
        head: the trained `DetectorHead`.
        config: the `DetectorConfig` it was trained with.
        calibration: Platt (a, b): calibrated score = sigmoid(a * objectness logit + b).
    """

    def __init__(
        self, head: DetectorHead, config: DetectorConfig, calibration: tuple[float, float] = (1.0, 0.0)
    ) -> None:
        self.head = head.eval()
        self.config = config
        self.calibration = (float(calibration[0]), float(calibration[1]))
        self.device = torch.device(config.device if config.device != "cuda" or torch.cuda.is_available() else "cpu")
        self.head.to(self.device)

    def raw(
        self, embedding: np.ndarray | torch.Tensor, input_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(objectness logits M float32, boxes Mx4 float32 XYXY model frame) over the M valid cells."""
        x = _embedding_tensor(embedding).to(self.device, torch.float32)[None]
        with torch.inference_mode():
            logits, encoded = self.head(x)
        logits = logits.reshape(-1).float().cpu()
        encoded = encoded.reshape(4, -1).t().float().cpu()
        valid = _valid_cells(input_size)
        centers = cell_centers()[valid]
        boxes = decode_ltrb(encoded[valid], centers)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, input_size[1])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, input_size[0])
        return logits[valid], boxes

    def predict(
        self,
        embedding: np.ndarray | torch.Tensor,
        original_size: tuple[int, int],
        input_size: tuple[int, int],
        score_thresh: float = 0.5,
        nms_thresh: float = 0.5,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes of the objects in one image.

        Args:
            embedding: 256x64x64 (or 1x256x64x64) float, SAM's embedding of the image.
            original_size: (h, w) of the image in pixels.
            input_size: (h, w) of the image inside the 1024 model frame.
            score_thresh: keep detections with calibrated score >= this (0..1).
            nms_thresh: drop a box whose IoU with a better kept box exceeds this.

        Returns:
            (boxes Nx4 float32 XYXY original frame, calibrated scores N float32), best first,
            at most ``config.max_detections``.
        """
        _check_sizes(original_size, input_size)
        if not 0.0 <= score_thresh <= 1.0 or not 0.0 <= nms_thresh <= 1.0:
            raise ValueError(f"score_thresh and nms_thresh must be in 0..1, got {score_thresh}, {nms_thresh}")
        logits, boxes = self.raw(embedding, input_size)
        scores = self.calibrate(logits)
        keep = scores >= score_thresh
        wide = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
        scores, boxes = scores[keep & wide], boxes[keep & wide]
        kept = batched_nms(boxes, scores, torch.zeros(len(scores), dtype=torch.int64), nms_thresh)
        kept = kept[: self.config.max_detections]
        original = to_original_frame(boxes[kept], original_size, input_size)
        return original.numpy().astype(np.float32), scores[kept].numpy().astype(np.float32)

    def calibrate(self, logits: torch.Tensor) -> torch.Tensor:
        """Objectness logits (any shape) → calibrated scores in 0..1."""
        a, b = self.calibration
        return torch.sigmoid(a * logits + b)

    def save(self, path: str | Path) -> Path:
        """Write weights, config and calibration to one file (torch.save of plain tensors and numbers)."""
        path = Path(path)
        state = {k: v.detach().cpu() for k, v in self.head.state_dict().items()}
        torch.save(
            {
                "format": FORMAT,
                "config": asdict(self.config),
                "calibration": list(self.calibration),
                "state_dict": state,
            },
            path,
        )
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> Detector:
        """Read a file written by `save` (ValueError naming the file if it is not one)."""
        try:
            payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
            raise ValueError(f"{path}: not a readable detector file ({error})") from error
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not a detector file (format {FORMAT!r} expected)")
        config = DetectorConfig.from_dict({**payload["config"], **({"device": device} if device else {})})
        head = DetectorHead(config.width, config.depth)
        head.load_state_dict(payload["state_dict"], strict=True)
        return cls(head, config, tuple(payload["calibration"]))


# -- training -------------------------------------------------------------------------------------


def train_detector(
    samples: Sequence[DetectionSample | tuple[Any, Any, Any, Any]],
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
    samples = [_sample(s, i) for i, s in enumerate(samples)]
    n_boxes = sum(len(s.boxes) for s in samples)
    if not samples or n_boxes == 0:
        raise ValueError("no training boxes: a detector needs annotated masks to learn from")
    if n_boxes < config.min_boxes:
        raise ValueError(f"too few training boxes: {n_boxes} given, at least {config.min_boxes} needed")
    with_boxes = [i for i, s in enumerate(samples) if len(s.boxes)]
    if len(with_boxes) < 2:
        raise ValueError("at least 2 images with boxes are needed (one is kept out to calibrate the scores)")

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    order = list(range(len(samples)))
    rng.shuffle(order)
    n_cal = max(1, round(config.calibration_fraction * len(samples)))
    calibration_ids = _calibration_split(order, set(with_boxes), n_cal)
    train_ids = [i for i in order if i not in set(calibration_ids)]

    device = torch.device(config.device if config.device != "cuda" or torch.cuda.is_available() else "cpu")
    head = DetectorHead(config.width, config.depth).to(device)
    data = _Batches([samples[i] for i in train_ids], config, device)
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
    calibration, how, n_dets = fit_calibration_on(detector, [samples[i] for i in calibration_ids])
    detector.calibration = calibration
    metrics = {
        "losses": losses,
        "epochs_done": len(losses),
        "stopped_early": stopped,
        "train_images": len(train_ids),
        "train_boxes": sum(len(samples[i].boxes) for i in train_ids),
        "calibration_images": len(calibration_ids),
        "calibration_boxes": sum(len(samples[i].boxes) for i in calibration_ids),
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
        self.embeddings = torch.stack([_embedding_tensor(s.embedding).to(torch.float16) for s in samples])
        self.targets = [_image_targets(s, config.center_ratio, flip=False) for s in samples]
        self.flipped = [
            _image_targets(s, config.center_ratio, flip=True)
            if config.hflip and s.input_size[1] == MODEL_SIZE
            else None
            for s in samples
        ]
        views = len(samples) + sum(t is not None for t in self.flipped)
        self.steps_per_epoch = max(1, math.ceil(views / config.batch_size))

    def epoch(self, rng: random.Random):
        views = [(i, False) for i in range(len(self.targets))] + [
            (i, True) for i, t in enumerate(self.flipped) if t is not None
        ]
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
    giou = ((1 - _giou(predicted, targets["box"][positive])) * weight).sum() / weight.sum()
    l1 = ((encoded[positive] - targets["encoded"][positive]).abs().sum(dim=1) * weight).sum() / weight.sum()
    return focal + giou + 0.5 * l1


# -- calibration ----------------------------------------------------------------------------------


def fit_platt(logits: np.ndarray, labels: np.ndarray, l2: float = 1e-3) -> tuple[float, float]:
    """Platt scaling: (a, b) maximising the likelihood of binary `labels` N under sigmoid(a*logit + b).

    logits N float, labels N in {0, 1}; a small L2 penalty keeps (a, b) finite on separable data.

    Raises:
        ValueError: empty input, mismatched lengths, or labels of one class only.
    """
    x = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.float64))
    if x.ndim != 1 or x.shape != y.shape or x.numel() == 0:
        raise ValueError(
            f"logits and labels must be two non-empty vectors of one length, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if not ((y == 0) | (y == 1)).all() or y.min() == y.max():
        raise ValueError("labels must be 0/1 and contain both classes")
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([params], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.binary_cross_entropy_with_logits(params[0] * x + params[1], y) + l2 * (params**2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    a, b = (float(v) for v in params.detach())
    return a, b


def fit_calibration_on(
    detector: Detector, samples: Sequence[DetectionSample], nms_thresh: float = 0.5, min_detections: int = 10
) -> tuple[tuple[float, float], str, int]:
    """Fit the detector's Platt calibration on images it was not trained on.

    Returns ((a, b), how: "platt" | "identity: <reason>", number of detections used). Detections
    are the raw top `max_detections` per image after NMS, labelled true positive when they match
    an unmatched ground-truth box at IoU >= 0.5 (greedy by score, as in evaluation).
    """
    logits_all, labels_all = [], []
    for sample in samples:
        logits, boxes = _raw_nms(detector, sample, nms_thresh)
        gt = to_model_frame(sample.boxes, sample.original_size, sample.input_size)
        logits_all.append(logits.numpy())
        labels_all.append(_match(boxes, gt).astype(np.float64))
    logits = np.concatenate(logits_all) if logits_all else np.zeros(0)
    labels = np.concatenate(labels_all) if labels_all else np.zeros(0)
    if len(logits) < min_detections:
        return (1.0, 0.0), f"identity: only {len(logits)} calibration detections", int(len(logits))
    if labels.min() == labels.max():
        return (
            (1.0, 0.0),
            "identity: calibration detections were all " + ("right" if labels[0] else "wrong"),
            len(logits),
        )
    return fit_platt(logits, labels), "platt", int(len(logits))


def _raw_nms(detector: Detector, sample: DetectionSample, nms_thresh: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw logits N and model-frame boxes Nx4 of one image after NMS, best first."""
    logits, boxes = detector.raw(sample.embedding, sample.input_size)
    wide = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
    logits, boxes = logits[wide], boxes[wide]
    kept = batched_nms(boxes, logits, torch.zeros(len(logits), dtype=torch.int64), nms_thresh)
    kept = kept[: detector.config.max_detections]
    return logits[kept], boxes[kept]


def _match(boxes: torch.Tensor, gt: torch.Tensor, iou_thresh: float = 0.5) -> np.ndarray:
    """Greedy matching of Nx4 detections (best first) to Kx4 ground truth: N bool true positives."""
    tp = np.zeros(len(boxes), dtype=bool)
    if len(boxes) == 0 or len(gt) == 0:
        return tp
    ious = box_iou(torch.cat([boxes.float(), gt.float()]))[: len(boxes), len(boxes) :].numpy()
    taken = np.zeros(len(gt), dtype=bool)
    for i in range(len(boxes)):
        candidates = np.where(~taken, ious[i], -1.0)
        j = int(candidates.argmax())
        if candidates[j] >= iou_thresh:
            taken[j] = True
            tp[i] = True
    return tp


# -- evaluation -----------------------------------------------------------------------------------


def evaluate_detector(
    detector: Detector,
    samples: Sequence[DetectionSample | tuple[Any, Any, Any, Any]],
    score_thresh: float = 0.5,
    nms_thresh: float = 0.5,
) -> dict[str, float]:
    """Box metrics at IoU 0.5 on held-out images.

    Returns ``recall_50`` and ``precision_50`` of the detections with calibrated score >=
    `score_thresh` (the operating point proposals use), ``recall_50_any`` (recall of all kept
    detections, up to ``max_detections`` per image, whatever their score), ``ap50`` (area under the
    all-point interpolated precision/recall curve over all detections ranked by score, VOC/COCO
    style), and the counts ``images``, ``boxes``, ``detections`` (at the threshold).
    """
    samples = [_sample(s, i) for i, s in enumerate(samples)]
    if not samples:
        raise ValueError("no evaluation images")
    scored: list[tuple[float, bool]] = []
    n_gt = tp_at = det_at = 0
    for sample in samples:
        logits, boxes = _raw_nms(detector, sample, nms_thresh)
        scores = detector.calibrate(logits).numpy()
        gt = to_model_frame(sample.boxes, sample.original_size, sample.input_size)
        tp = _match(boxes, gt)
        n_gt += len(gt)
        scored += list(zip(scores.tolist(), tp.tolist()))
        above = scores >= score_thresh
        # Matching restricted to the thresholded detections: a lower-scored duplicate cannot steal a match.
        tp_above = _match(boxes[torch.as_tensor(above)], gt)
        tp_at += int(tp_above.sum())
        det_at += int(above.sum())
    scored.sort(key=lambda item: -item[0])
    hits = np.array([hit for _, hit in scored], dtype=bool)
    return {
        "recall_50": tp_at / n_gt if n_gt else 0.0,
        "precision_50": tp_at / det_at if det_at else 0.0,
        "recall_50_any": float(hits.sum()) / n_gt if n_gt else 0.0,
        "ap50": average_precision(hits, n_gt),
        "score_thresh": float(score_thresh),
        "images": len(samples),
        "boxes": int(n_gt),
        "detections": int(det_at),
    }


def average_precision(hits: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP of detections ranked best first (`hits` N bool) against `n_gt` boxes."""
    if n_gt == 0 or len(hits) == 0:
        return 0.0
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / n_gt
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or beyond
    previous = np.concatenate([[0.0], recall[:-1]])
    return float(((recall - previous) * envelope).sum())


# -- input checks ---------------------------------------------------------------------------------


def _embedding_tensor(embedding: np.ndarray | torch.Tensor) -> torch.Tensor:
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


def _check_sizes(original_size: Any, input_size: Any) -> None:
    for name, size in (("original_size", original_size), ("input_size", input_size)):
        if len(size) != 2 or not all(int(v) == v and v > 0 for v in size):
            raise ValueError(f"{name} must be two positive integers (h, w), got {size!r}")
    if max(input_size) > MODEL_SIZE:
        raise ValueError(f"input_size {tuple(input_size)} exceeds the {MODEL_SIZE} model frame")


def _sample(sample: DetectionSample | tuple[Any, Any, Any, Any], index: int) -> DetectionSample:
    if not isinstance(sample, DetectionSample):
        if len(sample) != 4:
            raise ValueError(f"sample {index}: expected (embedding, original_size, input_size, boxes)")
        sample = DetectionSample(*sample)
    _embedding_tensor(sample.embedding)
    original = tuple(int(v) for v in sample.original_size)
    inner = tuple(int(v) for v in sample.input_size)
    _check_sizes(original, inner)
    boxes = (
        np.asarray(sample.boxes, dtype=np.float32).reshape(-1, 4)
        if np.size(sample.boxes)
        else np.zeros((0, 4), np.float32)
    )
    if not np.isfinite(boxes).all() or (boxes[:, 2:] <= boxes[:, :2]).any():
        raise ValueError(f"sample {index}: boxes must be finite XYXY with x0 < x1 and y0 < y1")
    return DetectionSample(sample.embedding, original, inner, boxes)
