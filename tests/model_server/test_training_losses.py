"""SAM's loss against values worked out by hand on two-pixel masks, and the min-over-masks rule.

Two pixels, logits (0, 2), target (1, 0): p = (0.5, σ(2) = 0.880797).
- focal (α 0.25, γ 2): pixel 1: 0.25 · (1 − 0.5)² · ln 2 = 0.0433217;
  pixel 2 (background, p_t = 1 − 0.880797): 0.75 · 0.880797² · −ln(0.119203) = 1.2375586;
  mean 0.6404402.
- dice: 1 − (2 · 0.5 + 1) / (0.5 + 0.880797 + 1 + 1) = 0.4084235.
- IoU of (logits > 0) = (0, 1) with (1, 0): 0.
Logits (2, −2), same target: focal = (0.25 + 0.75) · 0.119203² · −ln(0.880797) / 2 = 0.0009018;
dice = 1 − (2 · 0.880797 + 1) / (0.880797 + 0.119203 + 1 + 1) = 0.0794686; IoU 1.
"""

from __future__ import annotations

import pytest
import torch

from model_server.training.losses import dice_loss, focal_loss, mask_iou, sam_loss


def pixels(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1)


def test_focal_loss_matches_hand_computation():
    loss = focal_loss(pixels(0.0, 2.0), pixels(1, 0))
    assert loss.shape == (1, 1)
    assert loss.item() == pytest.approx(0.6404402, abs=1e-6)


def test_dice_loss_matches_hand_computation():
    assert dice_loss(pixels(0.0, 2.0), pixels(1, 0)).item() == pytest.approx(0.4084235, abs=1e-6)


def test_invalid_pixels_count_for_nothing():
    valid = pixels(1, 0)
    # Only pixel 1 remains: focal 0.0433217; dice 1 − (2·0.5 + 1) / (0.5 + 1 + 1) = 0.2.
    assert focal_loss(pixels(0.0, 2.0), pixels(1, 0), valid).item() == pytest.approx(0.0433217, abs=1e-6)
    assert dice_loss(pixels(0.0, 2.0), pixels(1, 0), valid).item() == pytest.approx(0.2, abs=1e-6)
    assert mask_iou(pixels(0.0, 2.0), pixels(1, 0), valid).item() == 0.0  # pixel 1 predicted background


def test_mask_iou_of_thresholded_logits():
    assert mask_iou(pixels(0.0, 2.0), pixels(1, 0)).item() == 0.0
    assert mask_iou(pixels(2.0, -2.0), pixels(1, 0)).item() == 1.0
    assert mask_iou(pixels(1.0, 1.0), pixels(1, 0)).item() == 0.5
    assert mask_iou(pixels(-1.0, -1.0), pixels(0, 0)).item() == 1.0  # nothing to find, nothing found


def test_sam_loss_keeps_the_lowest_loss_mask_and_supervises_every_iou():
    # Mask 0 = logits (0, 2): 20 · 0.6404402 + 0.4084235 = 13.2172269.
    # Mask 1 = logits (2, −2): 20 · 0.0009018 + 0.0794686 = 0.0975042 → the one kept.
    # IoU head predicts 0.5 for both; actual IoUs 0 and 1 → MSE (0.25 + 0.25) / 2 = 0.25.
    logits = torch.tensor([[[[0.0, 2.0]], [[2.0, -2.0]]]], requires_grad=True)
    iou_pred = torch.tensor([[0.5, 0.5]], requires_grad=True)
    terms = sam_loss(logits, iou_pred, pixels(1, 0))
    assert terms.chosen.tolist() == [1]
    assert terms.iou.tolist() == [[0.0, 1.0]]
    assert terms.total.item() == pytest.approx(0.0975042 + 0.25, abs=1e-6)
    terms.total.backward()
    # Gradient flows only through the argmin mask; the IoU head gets it on both outputs.
    assert torch.all(logits.grad[0, 0] == 0)
    assert torch.all(logits.grad[0, 1] != 0)
    assert iou_pred.grad[0].tolist() == pytest.approx([0.5, -0.5])  # d/dx of mean((x − y)²) = (x − y)


def test_min_is_taken_per_prompt_and_weights_apply():
    # Prompt 0 prefers mask 0, prompt 1 mask 1 (same two candidate masks, swapped).
    logits = torch.tensor([[[[2.0, -2.0]], [[0.0, 2.0]]], [[[0.0, 2.0]], [[2.0, -2.0]]]], requires_grad=True)
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2).expand(2, 1, 1, 2)
    iou_pred = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # exact: the IoU term is 0
    terms = sam_loss(logits, iou_pred, target, focal_weight=0.0, dice_weight=1.0)
    assert terms.chosen.tolist() == [0, 1]
    assert terms.total.item() == pytest.approx(0.0794686, abs=1e-6)  # dice of the good mask only
    terms.total.backward()
    assert torch.all(logits.grad[0, 1] == 0) and torch.all(logits.grad[1, 0] == 0)


def test_single_mask_output_is_always_kept():
    terms = sam_loss(pixels(0.0, 2.0), torch.tensor([[0.0]]), pixels(1, 0))
    assert terms.chosen.tolist() == [0]
    assert terms.total.item() == pytest.approx(13.2172269, abs=1e-5)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="BxCxHxW"):
        sam_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3), torch.zeros(1, 1, 4, 4))
