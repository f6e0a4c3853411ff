"""A training round: SAM's prompt encoder and mask decoder, and optionally the image encoder (paper App. A).

Each step draws `batch_size` masks (the effective batch) and plays one simulated interactive
session per mask:

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

Encoder training (`TrainConfig.encoder_mode`, set up by `encoder.prepare_encoder`) needs the images
(`image_samples.ImageSample`, the 1024 input, no augmentation): each micro-batch is encoded once, the
rounds run on the detached embedding and add up its gradient, and one encoder backward pass at the
end applies it, which is the gradient of the summed round losses without keeping the encoder's
graph per round. On CUDA the forward passes run under bfloat16 autocast and the encoder blocks
are checkpointed (both `TrainConfig` switches); on a CPU encoder training is refused unless a
test asks for it (`allow_cpu_encoder_training`, with a tiny encoder).

Randomness is drawn per step and per position in the global batch (seeded from `seed`, the step
and the position), and the sampler's order is the same in every process, so under
`torch.distributed` (see `distributed`) each process takes its slice of the global batch and the
result equals the one-process run on the same batch: gradients are averaged by PyTorch's
DistributedDataParallel, one reducer for the encoder and one for the decoder side, synchronised
only on the last micro-batch of a step (`no_sync` before). Rank 0 writes checkpoints and reports
progress; its `should_stop` answer is broadcast so every process stops at the same step.

Checkpoints (every `checkpoint_every` steps and at the end, `checkpoints`) hold the trainable
weights, optimiser, schedule, the sampler's RNG and the losses so far; a later call with the same
`checkpoint_dir` resumes from the newest one and continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from ..clicks import FOREGROUND, bounding_box, noisy_box, random_error_click, uniform_point
from ..sam import Sam
from ..samples import MaskSample
from .checkpoints import Sampler, checkpoint_path, latest_checkpoint, restore_checkpoint, save_checkpoint
from .config import TrainConfig, TrainResult
from .encoder import finish_encoder, prepare_encoder
from .image_samples import ImageSample, embed_image_samples, pixels
from .losses import sam_loss

LOW_RES = 256
CELL = 4  # model-frame pixels per low-res cell (1024 / 256)

Sample = MaskSample | ImageSample


def train_round(
    model: Sam,
    samples: Sequence[Sample],
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train `model` in place on `samples`: the prompt encoder and mask decoder, and the image
    encoder as `config.encoder_mode` says (then `samples` must be `ImageSample`s; a frozen encoder
    takes either, embedding `ImageSample`s once).

    progress(step, total_steps, loss) after each step; should_stop() is asked before each step and
    a True ends training after writing a checkpoint (TrainResult.stopped_early). Masks covering
    more than `max_mask_fraction` of their image are skipped; ValueError if none is left, if the
    encoder is to be trained on a CPU without `allow_cpu_encoder_training` or from embeddings only.
    """
    device = model.device
    if config.trains_encoder:
        if device.type != "cuda" and not config.allow_cpu_encoder_training:
            raise ValueError(
                f"encoder_mode {config.encoder_mode!r} trains the image encoder, which on a CPU takes days "
                "for a real encoder; run it on a GPU (or use encoder_mode 'frozen')"
            )
        if not all(isinstance(s, ImageSample) for s in samples):
            raise ValueError(
                f"encoder_mode {config.encoder_mode!r} trains on the images: give ImageSamples, not cached embeddings"
            )
    kept = [s for s in samples if s.area_fraction <= config.max_mask_fraction]
    if not kept:
        raise ValueError(
            f"no training data: {len(samples)} masks given, none covering at most "
            f"{config.max_mask_fraction:.0%} of its image"
        )
    images = [s for s in kept if isinstance(s, ImageSample)]
    if not config.trains_encoder and images:
        embedded = iter(embed_image_samples(model, images))
        kept = [next(embedded) if isinstance(s, ImageSample) else s for s in kept]
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    micro = config.micro_batch(world)
    targets = [_low_res_target(s) for s in kept]
    encoder_params = prepare_encoder(model, config)
    if config.trains_encoder:
        checkpointing = config.activation_checkpointing
        model.image_encoder.checkpointing = device.type == "cuda" if checkpointing is None else checkpointing
    decoder = _PromptAndMask(model)
    params = [*decoder.parameters(), *encoder_params]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, config))
    sampler = Sampler(len(kept), config.seed)
    result = TrainResult(steps_done=0)
    was_training = model.training
    try:
        if checkpoint_dir is not None:
            checkpoint_dir = Path(checkpoint_dir)
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            latest = latest_checkpoint(checkpoint_dir)
            if latest is not None:
                restore_checkpoint(latest, model, optimizer, scheduler, sampler, result, config, len(kept))
        model.train()
        parts = _Parts(model, decoder, bool(encoder_params), world > 1)
        mixed = device.type == "cuda" if config.mixed_precision is None else config.mixed_precision
        with torch.no_grad():
            dense_pe = model.prompt_encoder.get_dense_pe().to(device)

        def write_checkpoint() -> Path:
            assert checkpoint_dir is not None
            if rank == 0:
                save_checkpoint(checkpoint_dir, model, optimizer, scheduler, sampler, result, config, len(kept))
            if world > 1:
                dist.barrier()
            return checkpoint_path(checkpoint_dir, result.steps_done)

        while result.steps_done < config.steps:
            if _agreed_stop(should_stop if rank == 0 else None, world, device):
                result.stopped_early = True
                break
            batch = sampler.next_batch(config.batch_size)
            step = result.steps_done
            schedule = _round_schedule(config, np.random.default_rng([config.seed, step, 0]))
            optimizer.zero_grad(set_to_none=True)
            loss = 0.0
            for a in range(config.accumulation_steps):
                first = (rank * config.accumulation_steps + a) * micro
                positions = range(first, first + micro)
                loss += _micro_step(
                    parts,
                    dense_pe,
                    [kept[batch[p]] for p in positions],
                    [targets[batch[p]] for p in positions],
                    [np.random.default_rng([config.seed, step, 1 + p]) for p in positions],
                    schedule,
                    config,
                    sync=a == config.accumulation_steps - 1,
                    mixed_precision=mixed,
                )
            optimizer.step()
            scheduler.step()
            loss = _global_mean(loss / config.accumulation_steps, world, device)
            result.steps_done += 1
            result.losses.append(loss)
            if checkpoint_dir is not None and result.steps_done % config.checkpoint_every == 0:
                result.checkpoint_path = write_checkpoint()
            if progress is not None and rank == 0:
                progress(result.steps_done, config.steps, loss)
        if checkpoint_dir is not None and result.checkpoint_path != checkpoint_path(checkpoint_dir, result.steps_done):
            result.checkpoint_path = write_checkpoint()
    finally:
        finish_encoder(model)
        model.train(was_training)
    return result


class _PromptAndMask(nn.Module):
    """The decoder side as one module (what DistributedDataParallel wraps): prompts → masks."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder

    def forward(
        self,
        embeddings: torch.Tensor,
        dense_pe: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sparse = self.prompt_encoder.embed_points(coords, labels)
        dense = self.prompt_encoder.embed_masks(mask_input)
        return self.mask_decoder(embeddings, dense_pe, sparse, dense, multimask)


class _Parts:
    """The modules a micro-step calls, DDP-wrapped when several processes train together.

    The decoder side finds unused parameters (the box and no-mask embeddings are not used in
    every round); its gradients, accumulated over the rounds under `no_sync`, are reduced with
    the step's last round. The encoder has its own reducer, reduced by its one backward pass."""

    def __init__(self, model: Sam, decoder: _PromptAndMask, trains_encoder: bool, distributed: bool) -> None:
        self.model = model
        self.trains_encoder = trains_encoder
        self.decoder: nn.Module = decoder
        self.encoder: nn.Module = model.image_encoder
        if distributed:
            ids = [model.device.index] if model.device.type == "cuda" else None
            self.decoder = DistributedDataParallel(
                decoder, device_ids=ids, find_unused_parameters=True, broadcast_buffers=False
            )
            if trains_encoder:
                self.encoder = DistributedDataParallel(model.image_encoder, device_ids=ids, broadcast_buffers=False)

    @staticmethod
    def unsynced(module: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        if isinstance(module, DistributedDataParallel) and not sync:
            return module.no_sync()
        return contextlib.nullcontext()


# -- one step ------------------------------------------------------------------------------------


def _micro_step(
    parts: _Parts,
    dense_pe: torch.Tensor,
    samples: list[Sample],
    targets: list[tuple[np.ndarray, np.ndarray]],
    rngs: list[np.random.Generator],
    schedule: list[bool],
    config: TrainConfig,
    *,
    sync: bool,
    mixed_precision: bool,
) -> float:
    """One simulated interactive session per sample, one backward per round (gradients scaled so
    the step's micro-batches add up to the batch mean); the mean loss over rounds."""
    model = parts.model
    device = model.device
    scale = 1.0 / (config.accumulation_steps * len(schedule))
    encoded: torch.Tensor | None = None
    with _autocast(device, mixed_precision):
        if parts.trains_encoder:
            with parts.unsynced(parts.encoder, sync):
                encoded = parts.encoder(pixels(model, [s for s in samples if isinstance(s, ImageSample)]))
            embeddings = encoded.detach().float().requires_grad_()
        else:
            embeddings = _stacked_embeddings(samples, device)
    target = torch.from_numpy(np.stack([t for t, _ in targets]))[:, None].to(device)
    valid = torch.from_numpy(np.stack([v for _, v in targets]))[:, None].to(device)
    sessions = _first_prompts(samples, targets, config, rngs)
    mask_input: torch.Tensor | None = None
    total = 0.0
    for r, adds_point in enumerate(schedule):
        if adds_point and mask_input is not None:  # None only in round 0, the first prompt
            _add_points(sessions, mask_input, targets, rngs)
        coords, labels = _tokens(sessions)
        last = r == len(schedule) - 1
        with parts.unsynced(parts.decoder, sync and last), _autocast(device, mixed_precision):
            logits, iou_pred = parts.decoder(
                embeddings, dense_pe, coords.to(device), labels.to(device), mask_input, r == 0
            )
            logits, iou_pred = logits.float(), iou_pred.float()
            terms = sam_loss(
                logits, iou_pred, target, valid, config.focal_weight, config.dice_weight, config.iou_weight
            )
            (terms.total * scale).backward()
        total += float(terms.total.detach())
        best = iou_pred.detach().argmax(dim=1)
        mask_input = logits.detach()[torch.arange(len(samples)), best][:, None]
    if encoded is not None:
        assert embeddings.grad is not None
        encoded.backward(embeddings.grad.to(encoded.dtype))
    return total / len(schedule)


def _stacked_embeddings(samples: list[Sample], device: torch.device) -> torch.Tensor:
    arrays = [np.asarray(s.embedding, dtype=np.float32) for s in samples if isinstance(s, MaskSample)]
    return torch.stack([torch.from_numpy(a) for a in arrays]).to(device)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def _agreed_stop(should_stop: Callable[[], bool] | None, world: int, device: torch.device) -> bool:
    """Rank 0's should_stop answer, the same in every process."""
    stop = should_stop is not None and should_stop()
    if world == 1:
        return stop
    flag = torch.tensor([float(stop)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _global_mean(value: float, world: int, device: torch.device) -> float:
    """The mean of a per-process loss over the processes (a logged number, not a gradient)."""
    if world == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / world


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
    samples: list[Sample],
    targets: list[tuple[np.ndarray, np.ndarray]],
    config: TrainConfig,
    rngs: list[np.random.Generator],
) -> list[tuple[list[Token], list[Token]]]:
    """Per sample (clicks, trailing tokens): a foreground point followed by the padding point, or no
    click and the two corners of a noisy box. Both take two tokens and every later round adds one
    to each session, so the batch stays rectangular."""
    sessions: list[tuple[list[Token], list[Token]]] = []
    for sample, (target, _), rng in zip(samples, targets, rngs):
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
    rngs: list[np.random.Generator],
) -> None:
    """Append to each session a click drawn uniformly from the error region of its previous
    prediction, or a padding point where the prediction is exact."""
    pred = (mask_input[:, 0] > 0).cpu().numpy()
    for (clicks, _), (target, valid), p, rng in zip(sessions, targets, pred, rngs):
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


def _low_res_target(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
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
