"""Box metrics at IoU 0.5 on held-out images: greedy matching by score, recall, precision and AP."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..boxes import box_iou
from .config import SampleLike, as_sample
from .inference import Detector, raw_detections
from .targets import to_model_frame


def evaluate_detector(
    detector: Detector,
    samples: Sequence[SampleLike],
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
    images = [as_sample(s, i) for i, s in enumerate(samples)]
    if not images:
        raise ValueError("no evaluation images")
    scored: list[tuple[float, bool]] = []
    n_gt = tp_at = det_at = 0
    for sample in images:
        logits, boxes = raw_detections(detector, sample, nms_thresh)
        scores = detector.calibrate(logits).numpy()
        gt = to_model_frame(sample.boxes, sample.original_size, sample.input_size)
        tp = match_detections(boxes, gt)
        n_gt += len(gt)
        scored += list(zip(scores.tolist(), tp.tolist()))
        above = scores >= score_thresh
        # Matching restricted to the thresholded detections: a lower-scored duplicate cannot steal a match.
        tp_above = match_detections(boxes[torch.as_tensor(above)], gt)
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
        "images": len(images),
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


def match_detections(boxes: torch.Tensor, gt: torch.Tensor, iou_thresh: float = 0.5) -> np.ndarray:
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
