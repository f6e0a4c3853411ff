"""SAM's training loss (paper §3 and App. A).

Mask loss: focal + dice at 20 : 1 (focal with alpha 0.25, gamma 2, the usual sigmoid focal loss),
plus the mean squared error between the IoU head's prediction and the IoU the mask actually has.
With several output masks (an ambiguous first prompt) only the mask with the lowest mask loss is
back-propagated, so the three tokens can specialise on whole / part / subpart instead of being
pulled to one average; the IoU head is supervised on every output (it must rank them at inference).

All functions take low-res logits BxCxHxW, a target Bx1xHxW (broadcast over the C masks) and an
optional validity mask Bx1xHxW (pixels outside it, e.g. the padding of the model frame, count for
nothing); per-mask losses are means over the valid pixels, so they do not depend on resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def _weights(target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(target) if valid is None else valid.to(target.dtype)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
) -> torch.Tensor:
    """Sigmoid focal loss, BxC: mean over valid pixels of α_t (1 − p_t)^γ · BCE, where p_t is the
    probability of the true class and α_t = α on foreground, 1 − α on background."""
    target = target.to(logits.dtype)
    weight = _weights(target, valid)
    prob = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    loss = alpha_t * (1 - p_t) ** gamma * bce
    return (loss * weight).sum((-2, -1)) / weight.sum((-2, -1)).clamp(min=1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Soft dice loss, BxC: 1 − (2 Σ p·t + 1) / (Σ p + Σ t + 1) over valid pixels (p = sigmoid)."""
    target = target.to(logits.dtype)
    weight = _weights(target, valid)
    prob = torch.sigmoid(logits) * weight
    target = target * weight
    numerator = 2 * (prob * target).sum((-2, -1)) + 1
    denominator = prob.sum((-2, -1)) + target.sum((-2, -1)) + 1
    return 1 - numerator / denominator


@torch.no_grad()
def mask_iou(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """IoU, BxC float, of each thresholded mask (logit > 0) with the target over valid pixels; an
    empty prediction of an empty target counts as 1."""
    pred = logits > 0
    target = target.bool()
    if valid is not None:
        pred = pred & valid.bool()
        target = target & valid.bool()
    intersection = (pred & target).sum((-2, -1)).float()
    union = (pred | target).sum((-2, -1)).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


@dataclass
class LossTerms:
    total: torch.Tensor  # scalar: mean over the batch of the chosen mask's loss + weighted IoU MSE
    chosen: torch.Tensor  # B int64: index of the back-propagated (lowest-loss) mask
    iou: torch.Tensor  # BxC: actual IoU of every output mask (no gradient)


def sam_loss(
    logits: torch.Tensor,
    iou_pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    iou_weight: float = 1.0,
) -> LossTerms:
    """The SAM loss for logits BxCxHxW and IoU predictions BxC against a target Bx1xHxW.

    Per mask: focal_weight · focal + dice_weight · dice; only the lowest of the C is kept per
    prompt (argmin, so the others get no gradient); plus iou_weight · mean over C of
    (predicted IoU − actual IoU)².
    """
    if logits.ndim != 4 or iou_pred.shape != logits.shape[:2] or target.shape[1] != 1:
        raise ValueError(
            f"logits must be BxCxHxW, iou_pred BxC, target Bx1xHxW; got {tuple(logits.shape)}, "
            f"{tuple(iou_pred.shape)}, {tuple(target.shape)}"
        )
    per_mask = focal_weight * focal_loss(logits, target, valid) + dice_weight * dice_loss(logits, target, valid)
    chosen = per_mask.detach().argmin(dim=1)
    mask_term = per_mask.gather(1, chosen[:, None]).squeeze(1)
    actual = mask_iou(logits, target, valid)
    iou_term = ((iou_pred.float() - actual) ** 2).mean(dim=1)
    total = (mask_term + iou_weight * iou_term).mean()
    return LossTerms(total=total, chosen=chosen, iou=actual)
