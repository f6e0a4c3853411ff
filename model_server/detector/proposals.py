"""Pre-filled masks for the semi-automatic stage: detector boxes → SAM masks from box prompts.

`propose_masks` runs the box detector on an image's cached SAM embedding, prompts SAM with every
confident box (one decoder call per `batch_size` boxes, one mask per box: a box is an unambiguous
prompt) and keeps the masks whose detector score and SAM predicted IoU both pass their thresholds.
No encoder runs: the detector and the decoder both read the same cached embedding, which is why the
detector must have been trained on embeddings of the same SAM model version.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..predictor import Predictor
from ..rle import coco_encode, masks_to_rle
from .inference import Detector


def propose_masks(
    predictor: Predictor,
    detector: Detector,
    embedding: np.ndarray,
    original_size: tuple[int, int],
    input_size: tuple[int, int],
    score_thresh: float = 0.5,
    pred_iou_thresh: float = 0.5,
    nms_thresh: float = 0.5,
    max_boxes: int = 50,
    batch_size: int = 16,
) -> tuple[int, list[dict[str, Any]]]:
    """Masks of the confident objects of one image.

    Args:
        predictor: a `Predictor` of the SAM model the embedding came from (its image is replaced).
        detector: the trained box detector.
        embedding: 256x64x64 float (float16 as cached), the image's SAM embedding.
        original_size: (h, w) of the image in pixels; input_size: (h, w) inside the 1024 frame.
        score_thresh: minimum calibrated detector score; pred_iou_thresh: minimum SAM predicted IoU.
        nms_thresh: box NMS threshold of the detector; max_boxes: the best boxes prompted at most.
        batch_size: boxes per decoder call.

    Returns:
        (number of boxes prompted, records best score first, each with ``segmentation``
        (COCO RLE, str counts, original frame), ``area`` (pixels), ``box`` (XYXY float, original
        frame, the detector's), ``score`` (calibrated detector score), ``predicted_iou``). Empty
        masks are dropped.
    """
    if not 0.0 <= pred_iou_thresh <= 1.0:
        raise ValueError(f"pred_iou_thresh must be in 0..1, got {pred_iou_thresh}")
    if batch_size < 1 or max_boxes < 1:
        raise ValueError(f"batch_size and max_boxes must be positive, got {batch_size}, {max_boxes}")
    boxes, scores = detector.predict(embedding, original_size, input_size, score_thresh, nms_thresh)
    boxes, scores = boxes[:max_boxes], scores[:max_boxes]
    if len(boxes) == 0:
        return 0, []
    predictor.set_embedding(np.asarray(embedding, dtype=np.float32), original_size)
    records: list[dict[str, Any]] = []
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start : start + batch_size].astype(np.float64)
        masks, ious, _ = predictor.predict_batch(boxes=chunk, multimask_output=False)
        for i, (mask, iou) in enumerate(zip(masks[:, 0], ious[:, 0])):
            if iou < pred_iou_thresh or not mask.any():
                continue
            rle = masks_to_rle(torch.as_tensor(mask)[None])[0]
            records.append(
                {
                    "segmentation": coco_encode(rle),
                    "area": int(mask.sum()),
                    "box": [float(v) for v in chunk[i]],
                    "score": float(scores[start + i]),
                    "predicted_iou": float(iou),
                }
            )
    return len(boxes), records
