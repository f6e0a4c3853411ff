"""Evaluation: the click loop feeds clicks, labels and the previous logits the standard way, the
metrics count clicks the standard way, and `evaluate` runs end to end on a real (random) model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from model_server.evaluation import ClickSession, click_session, evaluate
from model_server.sam import build_sam
from model_server.samples import MaskSample
from model_server.transforms import preprocess_shape

H, W = 40, 60


def target_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[10:30, 10:40] = True  # 600 pixels
    return mask


class ScriptedPredictor:
    """Stands in for `Predictor` with a fixed sequence of answers, recording what it was asked.

    The real decoder's masks cannot be chosen; these let the click bookkeeping be checked exactly."""

    original_size = (H, W)

    def __init__(self, answers: list[np.ndarray]) -> None:
        self.answers = answers
        self.calls: list[dict] = []

    def predict(self, point_coords, point_labels, mask_input=None, multimask_output=True):
        k = len(self.calls)
        self.calls.append(
            dict(
                coords=point_coords.tolist(),
                labels=point_labels.tolist(),
                mask_input=mask_input,
                multimask=multimask_output,
            )
        )
        mask = self.answers[k]
        logits = np.full((256, 256), float(k), np.float32)
        if multimask_output:  # the IoU head ranks the second of three highest
            return np.stack([~mask, mask, ~mask]), np.array([0.1, 0.9, 0.2]), np.stack([logits - 1, logits, logits - 1])
        return mask[None], np.array([0.5]), logits[None]


def test_click_session_feeds_clicks_labels_and_previous_logits():
    target = target_mask()
    spill = target.copy()
    spill[:, 40:] = True  # click 1: the object plus a 20-px spill band → IoU 600 / 1400
    exact = target.copy()
    scripted = ScriptedPredictor([spill, exact, exact])
    session = click_session(scripted, target, max_clicks=3, stop_when=lambda ious: False)
    assert session.ious[0] == pytest.approx(600 / 1400)
    assert session.ious[1:] == [1.0, 1.0]  # exact after click 2; click 3 finds no error and is free
    assert len(scripted.calls) == 2
    first, second = scripted.calls
    assert first["labels"] == [1] and first["multimask"] and first["mask_input"] is None
    assert first["coords"] == [[19, 19]]  # distance 10 from the boundary; first such pixel in raster order
    assert second["labels"] == [1, 0] and not second["multimask"]  # the spill band → a negative click
    assert second["coords"][1] == [49, 9]  # middle of the 20-px band, 10 from its edges and the image's
    assert second["mask_input"].shape == (1, 256, 256) and second["mask_input"].max() == 0.0  # best of 3, call 0
    assert np.array_equal(session.mask, exact)


def test_click_session_stops_when_told():
    target = target_mask()
    session = click_session(ScriptedPredictor([target] * 5), target, 5, stop_when=lambda ious: ious[-1] >= 0.9)
    assert session.ious == [1.0]


def test_clicks_to_counts_the_first_click_reaching_the_target():
    session = ClickSession(ious=[0.5, 0.86, 0.88, 0.91], mask=np.zeros((1, 1), bool))
    assert session.clicks_to(0.85, 20) == 2
    assert session.clicks_to(0.9, 20) == 4
    assert session.clicks_to(0.95, 20) == 20


@pytest.fixture(scope="module")
def samples() -> list[MaskSample]:
    rng = np.random.default_rng(0)
    return [
        MaskSample(rng.standard_normal((256, 64, 64)).astype(np.float16), (H, W), preprocess_shape(H, W), target_mask())
        for _ in range(2)
    ]


def test_evaluate_reports_every_metric_in_range(samples):
    seen = []
    metrics = evaluate(build_sam("vit_t", seed=0), samples, max_clicks=6, progress=lambda i, n: seen.append((i, n)))
    assert set(metrics) == {"miou_1pt", "miou_at_1", "miou_at_3", "miou_at_5", "noc85", "noc90", "n_samples"}
    assert metrics["n_samples"] == 2 and seen == [(1, 2), (2, 2)]
    assert metrics["miou_1pt"] == metrics["miou_at_1"]
    assert all(0 <= metrics[k] <= 1 for k in ("miou_1pt", "miou_at_3", "miou_at_5"))
    assert 1 <= metrics["noc85"] <= metrics["noc90"] <= 6


def test_evaluate_refuses_no_samples():
    with pytest.raises(ValueError, match="at least one"):
        evaluate(build_sam("vit_t", seed=0), [])


def test_evaluation_does_not_import_training():
    """Evaluation measures a model; it must not depend on how models are trained (the two share the
    click simulation and the sample type, which live outside both)."""
    code = (
        "import sys, model_server.evaluation; "
        "print(sorted(m for m in sys.modules if m.startswith('model_server.training')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
