"""Train SAM's prompt encoder and mask decoder on cached image embeddings (paper App. A).

Each step draws `batch_size` masks and plays one simulated interactive session per mask:

1. the first prompt: a uniformly drawn foreground point or a noisy box (equal probability); the
   prompt is ambiguous, so the decoder outputs 3 masks and only the lowest-loss one is trained;
2. `clicks_per_sample` rounds each adding one point drawn uniformly from the error region of the
   previous prediction (missed foreground → positive, spill-over → negative) and
3. `no_point_rounds` rounds adding nothing (one at the end, the others at random positions among
   the clicks, as in the paper), so the decoder learns to refine its own mask;

from round 2 on the single-mask token is trained, and the previous low-res logits (for round 1, the
mask the IoU head ranked highest) are fed back as the mask prompt, detached: every round is its own
loss and its own backward pass, which bounds memory by one decoder pass. Loss: `losses.sam_loss`
averaged over rounds; AdamW, linear warm-up, step decay.

Prompts and losses live on the 256x256 low-res grid of the model frame (a point is the centre of its
4x4-pixel cell): the decoder predicts at that resolution, so nothing is upsampled during training.

The image encoder is frozen: samples carry its output. `train_image_encoder` would need the images
themselves and, after training, every embedding of the project recomputed; it is not implemented.

Checkpoints (every `checkpoint_every` steps and at the end, `checkpoints`) hold the trainable
weights, optimiser, schedule, the sampler's RNG and the losses so far; a later call with the same
`checkpoint_dir` resumes from the newest one and continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..clicks import FOREGROUND, bounding_box, noisy_box, random_error_click, uniform_point
from ..sam import Sam
from ..samples import MaskSample
from .checkpoints import Sampler, checkpoint_path, latest_checkpoint, restore_checkpoint, save_checkpoint
from .config import TrainConfig, TrainResult
from .losses import sam_loss

LOW_RES = 256
CELL = 4  # model-frame pixels per low-res cell (1024 / 256)


def train_decoder(
    model: Sam,
    samples: Sequence[MaskSample],
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train `model.prompt_encoder` and `model.mask_decoder` in place on `samples`.

    progress(step, total_steps, loss) after each step; should_stop() is asked before each step and
    a True ends training after writing a checkpoint (TrainResult.stopped_early). Masks covering
    more than `max_mask_fraction` of their image are skipped; ValueError if none is left.
    """
    if config.train_image_encoder:
        raise ValueError(
            "train_image_encoder is not supported: training runs on cached embeddings "
            "(the encoder is frozen); train on images and recompute embeddings elsewhere"
        )
    kept = [s for s in samples if s.area_fraction <= config.max_mask_fraction]
    if not kept:
        raise ValueError(
            f"no training data: {len(samples)} masks given, none covering at most "
            f"{config.max_mask_fraction:.0%} of its image"
        )
    device = model.device
    targets = [_low_res_target(s) for s in kept]
    modules: tuple[torch.nn.Module, ...] = (model.prompt_encoder, model.mask_decoder)
    params = [p for m in modules for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, config))
    sampler = Sampler(len(kept), config.seed)
    result = TrainResult(steps_done=0)
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        latest = latest_checkpoint(checkpoint_dir)
        if latest is not None:
            restore_checkpoint(latest, model, optimizer, scheduler, sampler, result, config, len(kept))

    was_training = [m.training for m in modules]
    for m in modules:
        m.train()
    try:
        with torch.no_grad():
            dense_pe = model.prompt_encoder.get_dense_pe().to(device)
        while result.steps_done < config.steps:
            if should_stop is not None and should_stop():
                result.stopped_early = True
                break
            batch = sampler.next_batch(config.batch_size)
            loss = _train_step(
                model, dense_pe, [kept[i] for i in batch], [targets[i] for i in batch], config, sampler.rng, optimizer
            )
            scheduler.step()
            result.steps_done += 1
            result.losses.append(loss)
            if checkpoint_dir is not None and result.steps_done % config.checkpoint_every == 0:
                result.checkpoint_path = save_checkpoint(
                    checkpoint_dir, model, optimizer, scheduler, sampler, result, config, len(kept)
                )
            if progress is not None:
                progress(result.steps_done, config.steps, loss)
        if checkpoint_dir is not None and (
            result.checkpoint_path is None
            or result.checkpoint_path != checkpoint_path(checkpoint_dir, result.steps_done)
        ):
            result.checkpoint_path = save_checkpoint(
                checkpoint_dir, model, optimizer, scheduler, sampler, result, config, len(kept)
            )
    finally:
        for m, mode in zip(modules, was_training):
            m.train(mode)
    return result


# -- one step ------------------------------------------------------------------------------------


def _train_step(
    model: Sam,
    dense_pe: torch.Tensor,
    samples: list[MaskSample],
    targets: list[tuple[np.ndarray, np.ndarray]],
    config: TrainConfig,
    rng: np.random.Generator,
    optimizer: torch.optim.Optimizer,
) -> float:
    """One simulated interactive session per sample, one backward per round; the mean loss."""
    device = model.device
    embeddings = torch.stack([torch.from_numpy(np.asarray(s.embedding, dtype=np.float32)) for s in samples]).to(device)
    target = torch.from_numpy(np.stack([t for t, _ in targets]))[:, None].to(device)
    valid = torch.from_numpy(np.stack([v for _, v in targets]))[:, None].to(device)
    sessions = _first_prompts(samples, targets, config, rng)
    schedule = _round_schedule(config, rng)
    optimizer.zero_grad(set_to_none=True)
    mask_input: torch.Tensor | None = None
    total = 0.0
    for r, adds_point in enumerate(schedule):
        if adds_point and mask_input is not None:  # None only in round 0, the first prompt
            _add_points(sessions, mask_input, targets, rng)
        multimask = r == 0
        coords, labels = _tokens(sessions)
        sparse = model.prompt_encoder.embed_points(coords.to(device), labels.to(device))
        dense = model.prompt_encoder.embed_masks(mask_input)
        logits, iou_pred = model.mask_decoder(embeddings, dense_pe, sparse, dense, multimask)
        terms = sam_loss(logits, iou_pred, target, valid, config.focal_weight, config.dice_weight, config.iou_weight)
        (terms.total / len(schedule)).backward()
        total += float(terms.total.detach())
        best = iou_pred.detach().argmax(dim=1)
        mask_input = logits.detach()[torch.arange(len(samples)), best][:, None]
    optimizer.step()
    return total / len(schedule)


def _round_schedule(config: TrainConfig, rng: np.random.Generator) -> list[bool]:
    """Per round, whether it adds a point: the first prompt, then the clicks with all but one of the
    no-point rounds at random positions among them, and one no-point round last."""
    rounds = [True] * config.clicks_per_sample
    for _ in range(max(config.no_point_rounds - 1, 0)):
        rounds.insert(int(rng.integers(1, len(rounds) + 1)) if rounds else 0, False)
    if config.no_point_rounds > 0:
        rounds.append(False)
    return [True, *rounds]


Token = tuple[float, float, int]  # (x, y) in the model frame and the prompt-encoder label


def _first_prompts(
    samples: list[MaskSample],
    targets: list[tuple[np.ndarray, np.ndarray]],
    config: TrainConfig,
    rng: np.random.Generator,
) -> list[tuple[list[Token], list[Token]]]:
    """Per sample (clicks, trailing tokens): a foreground point followed by the padding point, or no
    click and the two corners of a noisy box. Both take two tokens and every later round adds one
    to each session, so the batch stays rectangular."""
    sessions: list[tuple[list[Token], list[Token]]] = []
    for sample, (target, _) in zip(samples, targets):
        if rng.random() < config.box_probability:
            box = bounding_box(target) * CELL + np.array([0, 0, CELL - 1, CELL - 1])
            x0, y0, x1, y1 = noisy_box(box, rng, sample.input_size, config.box_noise_fraction, config.box_max_noise)
            sessions.append(([], [(x0, y0, 2), (x1, y1, 3)]))
        else:
            sessions.append(([(*_cell_centre(*uniform_point(target, rng)), FOREGROUND)], [(0.0, 0.0, -1)]))
    return sessions


def _add_points(
    sessions: list[tuple[list[Token], list[Token]]],
    mask_input: torch.Tensor,
    targets: list[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
) -> None:
    """Append to each session a click drawn uniformly from the error region of its previous
    prediction, or a padding point where the prediction is exact."""
    pred = (mask_input[:, 0] > 0).cpu().numpy()
    for (clicks, _), (target, valid), p in zip(sessions, targets, pred):
        click = random_error_click(p, target, rng, valid)
        clicks.append((0.0, 0.0, -1) if click is None else (*_cell_centre(click[0], click[1]), click[2]))


def _tokens(sessions: list[tuple[list[Token], list[Token]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """BxNx2 float32 model-frame coords and BxN int64 labels: each session's clicks, then its
    trailing tokens (padding point or box corners), the order the official model was trained with."""
    rows = [clicks + tail for clicks, tail in sessions]
    coords = torch.tensor([[(x, y) for x, y, _ in row] for row in rows], dtype=torch.float32)
    labels = torch.tensor([[label for _, _, label in row] for row in rows], dtype=torch.int64)
    return coords, labels


def _cell_centre(x: int, y: int) -> tuple[float, float]:
    """Model-frame (x, y) of the centre of low-res cell (x, y)."""
    return x * CELL + (CELL - 1) / 2, y * CELL + (CELL - 1) / 2


def _low_res_target(sample: MaskSample) -> tuple[np.ndarray, np.ndarray]:
    """(target, valid), 256x256 bool each, on the low-res grid of the padded model frame: the mask
    area-resized to the cells covering the resized image (≥ half covered → foreground); cells in
    the padding are invalid. An object too small for one cell keeps its most covered cell."""
    h_in, w_in = sample.input_size
    lh, lw = math.ceil(h_in / CELL), math.ceil(w_in / CELL)
    mask = torch.from_numpy(sample.mask)[None, None].float()
    coverage = F.interpolate(mask, size=(lh, lw), mode="area")[0, 0].numpy()
    small = coverage >= 0.5
    if not small.any():
        small = coverage == coverage.max()
    target = np.zeros((LOW_RES, LOW_RES), dtype=bool)
    valid = np.zeros((LOW_RES, LOW_RES), dtype=bool)
    target[:lh, :lw] = small
    valid[:lh, :lw] = True
    return target, valid


def _lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier after `step` optimiser steps: linear warm-up, then step decay."""
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    return warmup * config.lr_decay_gamma ** sum(step >= s for s in config.lr_decay_steps)
