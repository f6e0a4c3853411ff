"""What the served model says about one image for choosing what to annotate next (issue 18).

`score_embedding` reads only the image's stored embedding (no encoder run): the selection job of the
product scores a whole project after embedding, and again after each promoted model version.

* **pooled**: the embedding mean-pooled per channel over the image's own cells of the 64x64 grid
  (the padded cells right and below the resized image are left out: their value depends on the
  aspect ratio, not on the picture), then L2-normalised, so a dot product is a cosine similarity.
  256 floats; the backend's diversity ranking and near-duplicate flag compare these.
* **uncertainty** (0..1, higher = less sure): a `GRID` x `GRID` grid of single foreground points over
  the image is decoded in one batched call (multimask, low-res logits only: no upscaling), and three
  figures are taken from the candidates, each averaged over the points and turned so that high
  means unsure (all three are in `details`):

  - ``low_iou``: 1 - the best predicted IoU of each point's three masks;
  - ``instability``: 1 - the stability score (#logits > +1 / #logits > -1, the automatic generator's
    measure) of each point's best mask;
  - ``disagreement``: 1 - the mean pairwise IoU of each point's three ambiguity masks.

  `UNCERTAINTY` names the one reported as `uncertainty`, chosen by measurement: benchmarks/selection.py
  prints each figure's rank correlation with the model's actual 1-click error on pool images. On the
  seeded random vit_t, disagreement was the only one positive in both runs (+0.38 on 29 DAVIS frames,
  +0.12 on 66), the predicted IoU flipped sign (-0.32, +0.18), instability stayed weaker (+0.31,
  +0.06); all are weak on random weights, so measure again on a trained model.

Deterministic: the same embedding and weights give the same scores (one CPU decoder call, no
sampling).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .api import EMBEDDING_SHAPE, MODEL_SIZE, ImageScores
from .predictor import Predictor
from .sam import Sam

GRID = 4  # points per side of the probing grid (16 prompts)
# Prompts per decoder call: on a CPU the batched decoder costs more per prompt above a few prompts
# (one thread on the loaded 2-core box: 4 prompts 1.0 s, 16 prompts 7.5 s), so the grid goes in fours.
CHUNK = 4
STABILITY_OFFSET = 1.0  # the automatic generator's default
LOW_RES = 256
PATCH = MODEL_SIZE // EMBEDDING_SHAPE[-1]  # 16 pixels of the 1024 frame per embedding cell
UNCERTAINTY = "disagreement"


def pool_embedding(embedding: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """256 float32, L2-normalised: mean of each channel over the cells that hold the image.

    embedding: 1x256x64x64 or 256x64x64 float array (the 1024 model frame, padded bottom-right);
    input_size: (h, w) of the image resized into that frame (longest side 1024)."""
    grid = np.asarray(embedding, dtype=np.float32).reshape(EMBEDDING_SHAPE[1:])
    rows = max(1, math.ceil(input_size[0] / PATCH))
    cols = max(1, math.ceil(input_size[1] / PATCH))
    pooled = grid[:, :rows, :cols].mean(axis=(1, 2))
    norm = float(np.linalg.norm(pooled))
    return pooled / norm if norm > 0 else pooled


def _grid_points(input_size: tuple[int, int]) -> torch.Tensor:
    """GRID²x2 (x, y) cell centres of the resized image, in the 1024 model frame."""
    h, w = input_size
    steps = (np.arange(GRID) + 0.5) / GRID
    xs, ys = np.meshgrid(steps * w, steps * h)
    return torch.as_tensor(np.stack([xs.ravel(), ys.ravel()], axis=1), dtype=torch.float32)


def candidate_figures(
    sam: Sam, embedding: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> dict[str, float]:
    """The three uncertainty figures of the module docstring (each 0..1, higher = less sure)."""
    predictor = Predictor(sam)
    predictor.set_embedding(embedding, original_size)
    points = _grid_points(input_size)
    coords = torch.cat([points[:, None, :], torch.zeros(len(points), 1, 2)], dim=1)  # + padding point
    labels = torch.tensor([[1, -1]]).repeat(len(points), 1)
    with torch.inference_mode():
        parts = [
            predictor.decode(coords[i : i + CHUNK], labels[i : i + CHUNK], None, multimask_output=True)
            for i in range(0, len(points), CHUNK)
        ]
    low_res, iou = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    # Only the low-res cells of the resized image (the rest is padding the model never saw).
    rows = max(1, math.ceil(input_size[0] * LOW_RES / MODEL_SIZE))
    cols = max(1, math.ceil(input_size[1] * LOW_RES / MODEL_SIZE))
    logits = low_res.float()[:, :, :rows, :cols].flatten(2)  # Px3xN
    predicted = iou.float().clamp(0, 1)  # Px3
    best = predicted.argmax(dim=1)
    best_logits = logits[torch.arange(len(best)), best]  # PxN
    inner = (best_logits > STABILITY_OFFSET).sum(dim=1).float()
    outer = (best_logits > -STABILITY_OFFSET).sum(dim=1).float()
    stability = torch.where(outer > 0, inner / outer.clamp(min=1), torch.ones_like(outer))
    masks = logits > 0
    pair_ious = []
    for a, b in ((0, 1), (0, 2), (1, 2)):
        union = (masks[:, a] | masks[:, b]).sum(dim=1).float()
        both = (masks[:, a] & masks[:, b]).sum(dim=1).float()
        pair_ious.append(torch.where(union > 0, both / union.clamp(min=1), torch.ones_like(union)))
    agreement = torch.stack(pair_ious, dim=1).mean(dim=1)
    return {
        "low_iou": float(1 - predicted.max(dim=1).values.mean()),
        "instability": float(1 - stability.mean()),
        "disagreement": float(1 - agreement.mean()),
    }


def score_embedding(
    sam: Sam, embedding: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> ImageScores:
    """The selection scores of one stored embedding (1x256x64x64 or 256x64x64 float) of an image
    of `original_size` (h, w), resized to `input_size` (h, w) in the 1024 frame."""
    figures = candidate_figures(sam, embedding, original_size, input_size)
    pooled = pool_embedding(embedding, input_size)
    return ImageScores(pooled=[float(v) for v in pooled], uncertainty=figures[UNCERTAINTY], details=figures)
