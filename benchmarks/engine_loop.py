r"""The data engine's assisted-manual loop, simulated on DAVIS-345: annotate → retrain → evaluate.

A simulated annotator (`evaluation.click_session`: clicks from the ground truth, each at the point
of the error region farthest from its boundary) labels every object of a batch of new images with
the current model until the mask reaches IoU 0.85 or `--max-clicks`; the accepted mask is the
model's mask if it got there, else the ground truth (the annotator finishes it with the brush). The
masks collected so far become training data: a round (`training.train_round`) fine-tunes from the
current weights, then the model is evaluated on a fixed held-out split (`evaluation.evaluate`).
The split is by video sequence (DAVIS frames of one sequence are near-duplicates; the data set
names none, so `sequences` recovers them by colour-histogram linkage). Starts from seeded random
weights unless `--checkpoint` is given (random weights: absolute numbers are low, the tables are
about the trend).

Every run trains the decoder only (encoder frozen, cached embeddings); `--train-image-encoder
full|last_k|lora` runs the same loop a second time from the same initial model and split with the
encoder trained too (on the images, re-embedding the held-out and the next batch's images with
the new encoder each round). On a CPU that needs the tiny test encoder (`--model vit_test`).

Per round it prints: masks collected so far, the annotator's mean clicks per mask in that round
(with the model of the previous round), training steps, seconds for the round (annotate + train +
re-embed), masks trained on per second (with a trained encoder each is one encoder pass of its
image), the peak GPU memory of the training (on CUDA), and on the held-out masks NoC@85, NoC@90
(max `--max-clicks`), single-point mIoU and mIoU after 3 clicks. Frozen-encoder embeddings are
cached under --cache-dir. `--device cuda` trains under bfloat16 autocast with activation
checkpointing (the `TrainConfig` defaults on CUDA); `--checkpoint` starts from real weights.

The defaults are 1 sampled click per training session, no no-point rounds and focal : dice 1 : 1,
NOT the product's round defaults (`TrainConfig`: 8 clicks, 2 no-point rounds, 20 : 1); pass
`--focal-weight 20 --clicks-per-sample 8 --no-point-rounds 2` for those. Measured results, with
their exact commands and settings, are in benchmarks/README.md ("Retraining rounds (issue 16)").
The CPU runs there (tiny encoder; each was also run with the product-default flags above):

    .venv/bin/python benchmarks/engine_loop.py --model vit_test --rounds 3 --images-per-round 4 \
        --held-out 8 --steps-per-round 15 --batch-size 4 --max-clicks 10 --train-image-encoder full

The vit_b whole-model measurement on a GPU (not run yet: no GPU was available):

    .venv/bin/python benchmarks/engine_loop.py --model vit_b --checkpoint sam_vit_b_01ec64.pth \
        --device cuda --train-image-encoder full --rounds 1 --images-per-round 40 --held-out 30 \
        --steps-per-round 100 --batch-size 8 --focal-weight 20 --clicks-per-sample 8 --no-point-rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_server.evaluation import click_session, evaluate
from model_server.predictor import Predictor
from model_server.sam import build_sam
from model_server.sam.build import TEST_CONFIGS
from model_server.samples import MaskSample, embed_samples, load_image_and_masks, read_manifest
from model_server.training import (
    ENCODER_MODES,
    ImageSample,
    TrainConfig,
    embed_image_samples,
    image_samples,
    train_round,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis345"
SPLIT_SEED = 345  # fixes the held-out split whatever the other options
# DAVIS-345 names no sequences: frames whose colour histograms (8 bins per channel) differ by less
# than this total-variation distance are linked, and linked frames form one sequence (69 groups,
# at most 10 frames; DAVIS 2017 has 90 videos).
SEQUENCE_LINK = 0.25

Item = tuple[Path, list[Path]]


def sequences(items: list[Item]) -> list[list[int]]:
    """Indices of `items` grouped into video sequences (single-linkage on colour histograms)."""
    hists = []
    for image_path, _ in items:
        pixels = np.asarray(Image.open(image_path).convert("RGB").resize((107, 60))) // 32
        h = np.bincount((pixels[..., 0] * 64 + pixels[..., 1] * 8 + pixels[..., 2]).ravel(), minlength=512)
        hists.append(h / h.sum())
    stack = np.stack(hists)
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(items)):
        close = np.nonzero(np.abs(stack[i + 1 :] - stack[i]).sum(1) / 2 < SEQUENCE_LINK)[0] + i + 1
        for j in close:
            parent[root(int(j))] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(items)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def split_by_sequence(items: list[Item], held_out: int) -> tuple[list[Item], list[Item]]:
    """(held-out items, pool): whole sequences, in seeded order, go to the held-out split until it
    has at least `held_out` frames; the pool is the other sequences' frames, shuffled."""
    groups = sequences(items)
    rng = np.random.default_rng(SPLIT_SEED)
    held: list[int] = []
    rest: list[int] = []
    for g in rng.permutation(len(groups)):
        (held if len(held) < held_out else rest).extend(groups[g])
    rest = [rest[i] for i in rng.permutation(len(rest))]
    return [items[i] for i in held], [items[i] for i in rest]


def cached_samples(predictor: Predictor, item: Item, cache: Path, tag: str, max_side: int) -> list[MaskSample]:
    """Samples of one image, its embedding (frozen encoder `tag`) read from or written to the cache."""
    image_path, mask_paths = item
    key = hashlib.sha1(f"{tag}/{max_side}/{image_path}".encode()).hexdigest()[:16]
    file = cache / f"{key}.npz"
    image, masks = load_image_and_masks(image_path, mask_paths, max_side)
    if file.is_file():
        data = np.load(file)
        return [
            MaskSample(data["embedding"], tuple(data["original_size"]), tuple(data["input_size"]), m)
            for m in masks
            if m.any()
        ]
    samples = embed_samples(predictor, [(image, masks)])
    if samples:
        s = samples[0]
        np.savez(file, embedding=s.embedding, original_size=s.original_size, input_size=s.input_size)
    return samples


def image_samples_of(items: list[Item], max_side: int) -> list[ImageSample]:
    """Samples of the images that carry the resized image itself (for encoder training)."""
    return image_samples(load_image_and_masks(image_path, masks, max_side) for image_path, masks in items)


def annotate(model, samples: list[MaskSample], stop_iou: float, max_clicks: int) -> tuple[list[np.ndarray], float]:
    """The simulated annotator: (accepted masks, mean clicks per mask)."""
    predictor = Predictor(model)
    accepted, clicks = [], []
    for s in samples:
        predictor.set_embedding(s.embedding, s.original_size)
        session = click_session(predictor, s.mask, max_clicks, lambda ious: ious[-1] >= stop_iou)
        reached = session.ious[-1] >= stop_iou
        clicks.append(len(session.ious))
        accepted.append(session.mask if reached and session.mask.any() else s.mask)
    return accepted, float(np.mean(clicks))


def run_mode(args: argparse.Namespace, mode: str, held_items: list[Item], rounds: list[list[Item]]) -> list[str]:
    """The whole loop from the seeded initial model with `mode` (an encoder_mode); table rows."""
    model = build_sam(args.model, checkpoint=args.checkpoint, device=args.device, seed=args.seed)
    frozen = mode == "frozen"
    predictor = Predictor(model)
    tag = f"{args.model}/{args.checkpoint.resolve() if args.checkpoint else args.seed}"
    cuda = model.device.type == "cuda"

    def embedded(items: list[Item]) -> list[MaskSample]:
        """MaskSamples of `items` with the current encoder (cached while it is the initial one)."""
        if frozen:
            return [s for item in items for s in cached_samples(predictor, item, args.cache_dir, tag, args.max_side)]
        return embed_image_samples(model, image_samples_of(items, args.max_side))

    held = embedded(held_items)
    rows = []

    def report(round_: int, collected: int, clicks: str, steps: str, seconds: str, rate: str, peak: str) -> None:
        m = evaluate(model, held, max_clicks=args.max_clicks)
        rows.append(
            f"| {mode} | {round_} | {collected} | {clicks} | {steps} | {seconds} | {rate} | {peak} "
            f"| {m['noc85']:.2f} | {m['noc90']:.2f} | {m['miou_1pt']:.3f} | {m['miou_at_3']:.3f} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)

    report(0, 0, "–", "–", "–", "–", "–")
    collected: list[MaskSample | ImageSample] = []
    for r, items in enumerate(rounds, start=1):
        t = time.perf_counter()
        batch = embedded(items)
        masks, clicks = annotate(model, batch, 0.85, args.max_clicks)
        if frozen:
            collected += [MaskSample(s.embedding, s.original_size, s.input_size, m) for s, m in zip(batch, masks)]
        else:
            images = image_samples_of(items, args.max_side)
            collected += [ImageSample(s.image, s.original_size, s.input_size, m) for s, m in zip(images, masks)]
        config = round_config(args, mode, len(collected))
        if cuda:
            torch.cuda.reset_peak_memory_stats(model.device)
        t_train = time.perf_counter()
        train_round(model, collected, config)
        if cuda:
            torch.cuda.synchronize(model.device)
        # Masks trained on per second: with a trained encoder each is one encoder pass of its image.
        rate = f"{config.steps * config.batch_size / (time.perf_counter() - t_train):.2f}"
        peak = f"{torch.cuda.max_memory_allocated(model.device) / 2**30:.1f}" if cuda else "–"
        held = held if frozen else embedded(held_items)  # a trained encoder: new held-out embeddings
        seconds = f"{time.perf_counter() - t:.0f}"
        report(r, len(collected), f"{clicks:.1f}", str(config.steps), seconds, rate, peak)
    return rows


def round_config(args: argparse.Namespace, mode: str, n_masks: int) -> TrainConfig:
    steps = (
        math.ceil(args.epochs_per_round * n_masks / args.batch_size) if args.epochs_per_round else args.steps_per_round
    )
    decay = (int(args.lr_decay_at * steps),) if args.lr_decay_at < 1 else ()
    return TrainConfig(
        steps=steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=min(10, steps),
        lr_decay_steps=decay,
        clicks_per_sample=args.clicks_per_sample,
        no_point_rounds=args.no_point_rounds,
        checkpoint_every=steps,
        focal_weight=args.focal_weight,
        dice_weight=args.dice_weight,
        encoder_mode=mode,
        encoder_last_k=args.encoder_last_k,
        # Only the test-sized encoder may train on a CPU (a real one would take days).
        allow_cpu_encoder_training=args.model in TEST_CONFIGS,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_t", help="vit_t, or vit_test (tiny) for encoder training on a CPU")
    parser.add_argument(
        "--train-image-encoder",
        choices=[m for m in ENCODER_MODES if m != "frozen"],
        help="also run the loop training the image encoder this way, from the same model and split",
    )
    parser.add_argument("--encoder-last-k", type=int, default=1, help="blocks trained with last_k")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images-per-round", type=int, default=20)
    parser.add_argument("--held-out", type=int, default=30, help="held-out frames (whole sequences, fixed split)")
    parser.add_argument("--steps-per-round", type=int, default=100)
    parser.add_argument(
        "--epochs-per-round",
        type=float,
        default=None,
        help="train this many passes over the masks collected so far instead of a fixed step count",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--clicks-per-sample", type=int, default=1, help="sampled clicks per training session")
    parser.add_argument(
        "--no-point-rounds", type=int, default=0, help="training rounds that feed the mask back without a new point"
    )
    parser.add_argument("--lr", type=float, default=8e-4)
    parser.add_argument(
        "--lr-decay-at",
        type=float,
        default=0.75,
        help="share of a round's steps after which the learning rate drops tenfold (1: never)",
    )
    parser.add_argument(
        "--focal-weight",
        type=float,
        default=1.0,
        help="focal : dice weight (the product's round default and the paper's: 20 : 1)",
    )
    parser.add_argument("--dice-weight", type=float, default=1.0)
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--max-side", type=int, default=480, help="downscale images (masks, clicks) to this side")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initial weights")
    parser.add_argument("--checkpoint", type=Path, default=None, help="initial weights (e.g. sam_vit_b_01ec64.pth)")
    parser.add_argument(
        "--device", default="cpu", help="cuda: train with bfloat16 autocast and activation checkpointing"
    )
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/dataengine-engine-loop"))
    args = parser.parse_args()

    held_items, pool = split_by_sequence(read_manifest(DATA), args.held_out)
    needed = args.rounds * args.images_per_round
    if needed > len(pool):
        raise SystemExit(f"only {len(pool)} images besides the held-out split; {needed} requested")
    rounds = [pool[r * args.images_per_round : (r + 1) * args.images_per_round] for r in range(args.rounds)]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    header = (
        "| encoder | round | masks collected | annotator clicks/mask | train steps | round s | train masks/s "
        "| peak GPU GiB | NoC@85 | NoC@90 | 1-point mIoU | mIoU@3 clicks |"
    )
    rows = [header, "|" + "---|" * 12]
    modes = ["frozen"] + ([args.train_image_encoder] if args.train_image_encoder else [])
    for mode in modes:
        rows += run_mode(args, mode, held_items, rounds)
    weights = f"checkpoint {args.checkpoint.name}" if args.checkpoint else f"seed {args.seed}, random weights"
    cuda = torch.device(args.device).type == "cuda"
    print(
        f"\n{args.model} ({weights}) on {args.device}"
        f"{' (bfloat16 autocast, activation checkpointing)' if cuda else ''}, DAVIS-345 split by sequence, held-out "
        f"{len(held_items)} frames, max {args.max_clicks} clicks; {args.rounds} rounds of {args.images_per_round} "
        f"images; batch {args.batch_size}, lr {args.lr}, focal : dice {args.focal_weight:g} : "
        f"{args.dice_weight:g}, {args.clicks_per_sample} clicks + {args.no_point_rounds} no-point rounds per "
        f"session, lr cut tenfold after {args.lr_decay_at:.0%} of each round's steps; each round continued from "
        f"the previous round's weights; 'round s' = annotate + train + re-embed (a trained encoder) seconds\n"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
