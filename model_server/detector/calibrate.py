"""Platt scaling of the objectness logits on images the head was not trained on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .config import DetectionSample
from .evaluate import match_detections
from .inference import Detector, raw_detections
from .targets import to_model_frame


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
        sample_logits, boxes = raw_detections(detector, sample, nms_thresh)
        gt = to_model_frame(sample.boxes, sample.original_size, sample.input_size)
        logits_all.append(sample_logits.numpy())
        labels_all.append(match_detections(boxes, gt).astype(np.float64))
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
