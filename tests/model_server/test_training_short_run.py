"""A short real training run: vit_t with seeded random weights trained on GrabCut masks.

What a short CPU run shows, measured on the shared 2-core machine: the loss falls, and the decoder
fits the masks it was trained on (1-click mIoU on the training images 0.105 → 0.428 with 4 images,
10 steps of batch 4, lr 3e-3). What it does NOT show yet is the issue-7 requirement that held-out mIoU
rises: with the frozen RANDOM encoder, every configuration tried within a few minutes of CPU (lr
8e-4…1.5e-2, 12–30 steps, focal:dice 20:1…1:1, IoU-loss weight 1…10) collapses the decoder to an
image-independent all-background answer on unseen images (held-out 1-click mIoU 0.093 → 0.0, all
low-res logits < 0, IoU scores identical across images), or learns a click-centred blob that the IoU
head ranks below an empty mask. That is an open problem of issue 7, not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_server.evaluation import evaluate
from model_server.predictor import Predictor
from model_server.sam import build_sam
from model_server.training import TrainConfig, embed_samples, load_image_and_masks, read_manifest, train_decoder

N_TRAIN = 4
CONFIG = TrainConfig(steps=10, batch_size=4, lr=3e-3, warmup_steps=2, clicks_per_sample=1, no_point_rounds=0)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(data_root: Path) -> dict:
    items = read_manifest(data_root / "grabcut")[:N_TRAIN]
    model = build_sam("vit_t", seed=0)
    train = embed_samples(Predictor(model), (load_image_and_masks(image, masks) for image, masks in items))
    assert len(train) == N_TRAIN  # one mask per GrabCut image
    before = evaluate(model, train, max_clicks=1, iou_targets=(0.85,))
    result = train_decoder(model, train, CONFIG)
    after = evaluate(model, train, max_clicks=1, iou_targets=(0.85,))
    return {"result": result, "before": before, "after": after}


def test_short_training_lowers_the_loss(run):
    result = run["result"]
    assert result.steps_done == CONFIG.steps and all(np.isfinite(result.losses))
    assert np.mean(result.losses[-3:]) < 0.8 * np.mean(result.losses[:3])


def test_short_training_fits_the_collected_masks(run):
    """1-click mIoU on the masks it was trained on rises clearly (measured 0.105 → 0.428)."""
    before, after = run["before"], run["after"]
    assert after["miou_at_1"] > before["miou_at_1"] + 0.15
