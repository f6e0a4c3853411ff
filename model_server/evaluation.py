"""Interactive-segmentation quality of a model on held-out masks, the standard way.

A simulated annotator clicks on each mask (`clicks.farthest_error_click`: the next click
at the error-region point farthest from its boundary, positive on missed foreground, negative on
spill-over; the first click is therefore the object's most interior point). The first click asks for
3 masks and keeps the one the IoU head ranks highest (the SAM paper's single-point "valid mask"
protocol, no oracle); every later click asks for one mask, with all clicks so far and the previous
low-res logits as the mask prompt, as the annotate page does.

Metrics (IoU in the original frame, masks thresholded at logit 0):
- miou_1pt: mean IoU after the first click (the paper's single-point measure);
- miou_at_k (k = 1, 3, 5): mean IoU after k clicks (miou_at_1 equals miou_1pt under this
  protocol; both are kept because the curve and the paper's figure are read separately);
- noc85 / noc90 (one per `iou_targets`): mean number of clicks to reach that IoU, max_clicks when
  never reached;
- n_samples.
The same click loop (`click_session`) is the simulated annotator of `benchmarks/engine_loop.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .clicks import farthest_error_click
from .predictor import Predictor
from .sam import Sam
from .samples import MaskSample

MIOU_CLICKS = (1, 3, 5)


@dataclass
class ClickSession:
    ious: list[float]  # IoU after click 1, 2, ...
    mask: np.ndarray  # HxW bool: the last predicted mask, original frame

    def clicks_to(self, target: float, max_clicks: int) -> int:
        """Clicks needed to reach IoU ≥ target; max_clicks if never reached."""
        return next((i + 1 for i, iou in enumerate(self.ious) if iou >= target), max_clicks)


def click_session(
    predictor: Predictor, target: np.ndarray, max_clicks: int, stop_when: Callable[[list[float]], bool]
) -> ClickSession:
    """Click on the image set in `predictor` until `stop_when(ious)` or `max_clicks`.

    target: HxW bool ground truth in the original frame (the predictor's original_size)."""
    if target.shape != predictor.original_size:
        raise ValueError(f"target {target.shape} does not match the image {predictor.original_size}")
    target = target.astype(bool)
    pred = np.zeros_like(target)
    coords: list[tuple[int, int]] = []
    labels: list[int] = []
    low_res = None
    ious: list[float] = []
    while len(ious) < max_clicks:
        click = farthest_error_click(pred, target)
        if click is None:  # already exact: further clicks change nothing
            ious.append(ious[-1])
            continue
        coords.append(click[:2])
        labels.append(click[2])
        first = len(coords) == 1
        masks, scores, logits = predictor.predict(
            np.array(coords, dtype=np.float64), np.array(labels), mask_input=low_res, multimask_output=first
        )
        best = int(np.argmax(scores))
        pred, low_res = masks[best], logits[best][None]
        ious.append(_iou(pred, target))
        if stop_when(ious):
            break
    return ClickSession(ious=ious, mask=pred)


def evaluate(
    model: Sam,
    samples: Sequence[MaskSample],
    *,
    max_clicks: int = 20,
    iou_targets: Sequence[float] = (0.85, 0.9),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Metrics of `model` on `samples` (see the module docstring); progress(i, n) after each mask.

    A session stops once every IoU target is reached and at least 5 clicks were made; missing
    entries of the IoU curve after a stop repeat the last value (the mask is already as good).
    """
    if not samples:
        raise ValueError("evaluate needs at least one sample")
    if max_clicks < 1 or not all(0 < t <= 1 for t in iou_targets):
        raise ValueError("max_clicks must be ≥ 1 and every IoU target in (0, 1]")
    predictor = Predictor(model)
    top = max(iou_targets, default=0.0)
    min_clicks = min(max(MIOU_CLICKS), max_clicks)
    curves: list[list[float]] = []
    nocs: dict[float, list[int]] = {t: [] for t in iou_targets}
    for i, sample in enumerate(samples, start=1):
        predictor.set_embedding(sample.embedding, sample.original_size)
        session = click_session(
            predictor, sample.mask, max_clicks, lambda ious: len(ious) >= min_clicks and max(ious) >= top
        )
        curves.append([session.ious[min(k, len(session.ious)) - 1] for k in MIOU_CLICKS])
        for t in iou_targets:
            nocs[t].append(session.clicks_to(t, max_clicks))
        if progress is not None:
            progress(i, len(samples))
    curve = np.mean(curves, axis=0)
    metrics = {"miou_1pt": float(curve[0])}
    metrics.update({f"miou_at_{k}": float(v) for k, v in zip(MIOU_CLICKS, curve)})
    metrics.update({f"noc{round(t * 100)}": float(np.mean(nocs[t])) for t in iou_targets})
    metrics["n_samples"] = float(len(samples))
    return metrics


def _iou(pred: np.ndarray, target: np.ndarray) -> float:
    union = np.logical_or(pred, target).sum()
    return float(np.logical_and(pred, target).sum() / union) if union else 1.0
