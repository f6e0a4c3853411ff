"""A short real training run: vit_t with seeded random weights, its decoder trained on GrabCut masks.

The first 40 GrabCut images (one object each) are the collected masks, the last 10 are held out.
Measured on the shared 2-core machine (100 steps of batch 4 at the default lr 8e-4, one sampled
click per session, ~2 min): the loss falls by about a third, and held-out single-point mIoU rises
0.063 → 0.235 (mIoU after 3 clicks 0.130 → 0.312). The encoder is random, so these are low
absolute numbers: what the decoder learns is where an object around a click usually ends in these
random features. With only 4 training images every configuration tried overfits (the decoder
answers all-background on unseen images), and lr 3e-3 collapses to empty masks even on the
training images: data, not steps, is what generalises.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_server.evaluation import evaluate
from model_server.predictor import Predictor
from model_server.sam import build_sam
from model_server.samples import embed_samples, load_image_and_masks, read_manifest
from model_server.training import TrainConfig, train_decoder

N_TRAIN = 40
N_HELD_OUT = 10
MAX_SIDE = 480  # masks and clicks at this size: the encoder input is 1024 either way
CONFIG = TrainConfig(steps=100, batch_size=4, warmup_steps=10, clicks_per_sample=1, no_point_rounds=0)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(data_root: Path) -> dict:
    items = read_manifest(data_root / "grabcut")
    assert len(items) >= N_TRAIN + N_HELD_OUT
    model = build_sam("vit_t", seed=0)
    predictor = Predictor(model)
    samples = embed_samples(
        predictor, (load_image_and_masks(image, masks, MAX_SIDE) for image, masks in items[: N_TRAIN + N_HELD_OUT])
    )
    assert len(samples) == N_TRAIN + N_HELD_OUT  # one mask per GrabCut image
    train, held_out = samples[:N_TRAIN], samples[N_TRAIN:]

    def measure() -> dict[str, float]:
        return evaluate(model, held_out, max_clicks=3, iou_targets=(0.85,))

    before = measure()
    result = train_decoder(model, train, CONFIG)
    return {"result": result, "before": before, "after": measure()}


def test_short_training_lowers_the_loss(run):
    result = run["result"]
    assert result.steps_done == CONFIG.steps and all(np.isfinite(result.losses))
    assert np.mean(result.losses[-10:]) < 0.85 * np.mean(result.losses[:10])


def test_short_training_raises_held_out_miou(run):
    """Held-out single-point mIoU (measured 0.063 → 0.235) and mIoU after 3 clicks (0.130 → 0.312)."""
    before, after = run["before"], run["after"]
    assert after["miou_1pt"] > before["miou_1pt"] + 0.1, (before, after)
    assert after["miou_at_3"] > before["miou_at_3"] + 0.1, (before, after)
