"""The data engine's assisted-manual loop, simulated on DAVIS-345: annotate → retrain → evaluate.

A simulated annotator (`evaluation.click_session`: clicks from the ground truth, each at the point
of the error region farthest from its boundary) labels every object of a batch of new images with
the current model until the mask reaches IoU 0.85 or 20 clicks; the accepted mask is the model's
mask if it got there, else the ground truth (the annotator finishes it with the brush). The masks
collected so far become training data: the decoder is fine-tuned from the current weights
(`training.train_decoder`), then evaluated on a fixed held-out split (`evaluation.evaluate`).
Starts from vit_t with seeded random weights; the image encoder stays frozen (its random features
are all the decoder gets to see, so absolute numbers are low: the table is about the trend).

Per round it prints: masks collected so far, the annotator's mean clicks per mask in that round
(with the model of the previous round), training minutes, and on the held-out masks NoC@85,
NoC@90 (max 20), single-point mIoU and mIoU after 3 clicks. Image embeddings are computed once
(vit_t on the CPU, ~1.5–10 s per image depending on load) and cached under --cache-dir.

The defaults are the settings under which the loop is seen to improve a random-weight model
(measured on the shared 2-core box, ~10 min per round when two runs share it):
20 images per round, 100 steps of batch 4 per round with the learning rate cut tenfold after 75%
of them, one sampled click per training session, focal : dice at 1 : 1, and 30 held-out images.
With the paper's 20 : 1 (`--focal-weight 20`, the product's default for real models)
single-point mIoU also rises every round (0.043 → 0.076 → 0.100) but the refinement output
collapses to empty masks on held-out images (mIoU after 3 clicks 0.056 → 0.000 → 0.002): on
random features and DAVIS's small objects (median 4% of the frame) the focal term's background
weighting wins; dice keeps the masks.

Measured at the defaults (2026-12-01, 51 held-out masks of 30 images, 66 min with a test run
sharing the box; NoC stays at the 20-click cap, for the annotator too: a random frozen encoder
never lets a mask reach IoU 0.85):

    | round | masks | train min | 1-point mIoU | mIoU@3 |
    | 0     | 0     | –         | 0.033        | 0.042  |
    | 1     | 27    | 11.2      | 0.144        | 0.136  |
    | 2     | 59    | 7.8       | 0.151        | 0.175  |
    | 3     | 90    | 3.6       | 0.182        | 0.200  |

Every round improves both figures. Before, with a constant learning rate and 10 held-out images
(13 masks), round 3 was flat (1-point 0.043 → 0.198 → 0.206 → 0.201); both were changed at once,
so which of the two mattered is not measured. Training longer as data grows did not help there
(`--epochs-per-round 8`: 0.210 → 0.223 → 0.168). Reaching NoC below the cap needs a trained or
pretrained encoder.

    .venv/bin/python benchmarks/engine_loop.py
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_server.evaluation import click_session, evaluate
from model_server.predictor import Predictor
from model_server.sam import build_sam
from model_server.samples import MaskSample, embed_samples, load_image_and_masks, read_manifest
from model_server.training import TrainConfig, train_decoder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis345"
SPLIT_SEED = 345  # fixes the held-out split whatever the other options


def cached_samples(
    predictor: Predictor, item: tuple[Path, list[Path]], cache: Path, seed: int, max_side: int
) -> list[MaskSample]:
    """Samples of one image, its embedding read from or written to the cache."""
    image_path, mask_paths = item
    key = hashlib.sha1(f"vit_t/{seed}/{max_side}/{image_path}".encode()).hexdigest()[:16]
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


def annotate(model, samples: list[MaskSample], stop_iou: float, max_clicks: int) -> tuple[list[MaskSample], float]:
    """The simulated annotator: (accepted masks as training samples, mean clicks per mask)."""
    predictor = Predictor(model)
    accepted, clicks = [], []
    for s in samples:
        predictor.set_embedding(s.embedding, s.original_size)
        session = click_session(predictor, s.mask, max_clicks, lambda ious: ious[-1] >= stop_iou)
        reached = session.ious[-1] >= stop_iou
        clicks.append(len(session.ious))
        mask = session.mask if reached and session.mask.any() else s.mask
        accepted.append(MaskSample(s.embedding, s.original_size, s.input_size, mask))
    return accepted, float(np.mean(clicks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images-per-round", type=int, default=20)
    parser.add_argument("--held-out", type=int, default=30, help="held-out images (fixed split)")
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
        help="focal : dice weight; the paper's 20 : 1 collapses refinement here (see above)",
    )
    parser.add_argument("--dice-weight", type=float, default=1.0)
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--max-side", type=int, default=480, help="downscale images (masks, clicks) to this side")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initial weights")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/dataengine-engine-loop"))
    args = parser.parse_args()

    items = read_manifest(DATA)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(items))
    held_items = [items[i] for i in order[: args.held_out]]
    pool = [items[i] for i in order[args.held_out :]]
    needed = args.rounds * args.images_per_round
    if needed > len(pool):
        raise SystemExit(f"only {len(pool)} images besides the held-out split; {needed} requested")

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    model = build_sam("vit_t", seed=args.seed)
    predictor = Predictor(model)
    start = time.perf_counter()
    held = [s for item in held_items for s in cached_samples(predictor, item, args.cache_dir, args.seed, args.max_side)]
    batches = [
        [
            s
            for item in pool[r * args.images_per_round : (r + 1) * args.images_per_round]
            for s in cached_samples(predictor, item, args.cache_dir, args.seed, args.max_side)
        ]
        for r in range(args.rounds)
    ]
    print(
        f"embeddings ready ({len(held)} held-out masks, {sum(map(len, batches))} to annotate) "
        f"in {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )

    def round_config(n_masks: int) -> TrainConfig:
        steps = (
            math.ceil(args.epochs_per_round * n_masks / args.batch_size)
            if args.epochs_per_round
            else args.steps_per_round
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
        )

    header = (
        "| round | masks collected | annotator clicks/mask | train steps | train min | NoC@85 | NoC@90 "
        "| 1-point mIoU | mIoU@3 clicks |"
    )
    rows = [header, "|" + "---|" * 9]

    def report(round_: int, collected: int, clicks: str, steps: str, minutes: str) -> None:
        m = evaluate(model, held, max_clicks=args.max_clicks)
        rows.append(
            f"| {round_} | {collected} | {clicks} | {steps} | {minutes} | {m['noc85']:.2f} | {m['noc90']:.2f} "
            f"| {m['miou_1pt']:.3f} | {m['miou_at_3']:.3f} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)

    report(0, 0, "–", "–", "–")
    collected: list[MaskSample] = []
    for r, batch in enumerate(batches, start=1):
        accepted, clicks = annotate(model, batch, 0.85, args.max_clicks)
        collected += accepted
        t = time.perf_counter()
        config = round_config(len(collected))
        train_decoder(model, collected, config)
        report(r, len(collected), f"{clicks:.1f}", str(config.steps), f"{(time.perf_counter() - t) / 60:.1f}")
    print(
        f"\nvit_t (seed {args.seed}, random weights, encoder frozen), DAVIS-345, held-out {len(held)} masks "
        f"of {args.held_out} images; batch {args.batch_size}, lr {args.lr}, focal : dice {args.focal_weight:g} : "
        f"{args.dice_weight:g}, lr cut tenfold after {args.lr_decay_at:.0%} of each round's steps; each round "
        f"continued from the previous round's weights\n"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
