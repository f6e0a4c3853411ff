"""`Detector`: a trained head and its score calibration, giving calibrated boxes of one image."""

from __future__ import annotations

import pickle
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..boxes import batched_nms
from .config import DetectionSample, DetectorConfig, check_sizes, embedding_tensor
from .head import DetectorHead
from .targets import cell_centers, decode_ltrb, to_original_frame, valid_cells

FORMAT = "dataengine-detector-1"


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
        self.device = config.torch_device()
        self.head.to(self.device)

    def raw(
        self, embedding: np.ndarray | torch.Tensor, input_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(objectness logits M float32, boxes Mx4 float32 XYXY model frame) over the M valid cells."""
        x = embedding_tensor(embedding).to(self.device, torch.float32)[None]
        with torch.inference_mode():
            logits, encoded = self.head(x)
        logits = logits.reshape(-1).float().cpu()
        encoded = encoded.reshape(4, -1).t().float().cpu()
        valid = valid_cells(input_size)
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
        check_sizes(original_size, input_size)
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


def raw_detections(detector: Detector, sample: DetectionSample, nms_thresh: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw logits N and model-frame boxes Nx4 of one image after NMS, best first, at most
    ``max_detections``: what calibration and evaluation score, before any score threshold."""
    logits, boxes = detector.raw(sample.embedding, sample.input_size)
    wide = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
    logits, boxes = logits[wide], boxes[wide]
    kept = batched_nms(boxes, logits, torch.zeros(len(logits), dtype=torch.int64), nms_thresh)
    kept = kept[: detector.config.max_detections]
    return logits[kept], boxes[kept]
