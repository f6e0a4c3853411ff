"""Which images to annotate first (issue 18): the engine loop under each selection strategy.

The loop of `benchmarks/engine_loop.py` (simulated annotator: clicks from the ground truth until IoU
0.85 or `--max-clicks`, then the brush; the decoder fine-tuned on what was collected; vit_t with
seeded random weights, encoder frozen), run once per strategy with the same annotation budget per
round (`--budget` images) from the same pool, evaluated on the same held-out images:

* upload order (what `claim next` did before), random with three seeds, uncertainty (the served
  model's `model_server.selection.score_embedding` on every pool image, most uncertain first,
  re-scored with each round's model), diversity (k-center greedy over the pooled embeddings,
  `backend.selection.ranking.greedy_order`, the annotated images as the chosen set) and mix (the
  greedy pick weighted by uncertainty): the product's own functions.

**Split by video sequence.** DAVIS-345's frames come from videos but name no sequence: engine_loop's
`sequences` links frames with close colour histograms into sequences. Every `--held-out-every`-th
sequence is held out whole, so no held-out frame has a sibling frame of its video in the pool (with a
random split of frames, most would, and near-duplicates would inflate every strategy alike). The
pool stays in frame order: upload order is a team uploading its videos one after the other.

Before the loop it prints, for the initial model, each candidate uncertainty figure's Spearman rank
correlation with the model's actual 1-click error (1 - IoU, mean over the image's objects) on the pool:
the figure that tracks real error best is the one worth ranking by (`model_server.selection.UNCERTAINTY`).

Embeddings come from engine_loop's cache (--cache-dir; computed there on first use). Torch runs on
one thread: on the shared, loaded 2-core box two threads made one decoder call 10x slower.

    .venv/bin/python benchmarks/selection.py   # the README's table: 15.8 min on the shared 2-core box (load ~15)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_loop import DATA, cached_samples, sequences
from engine_loop import annotate as annotate_masks

from backend.selection.ranking import greedy_order
from model_server.evaluation import evaluate
from model_server.predictor import Predictor
from model_server.sam import Sam, build_sam
from model_server.samples import MaskSample, read_manifest
from model_server.selection import candidate_figures, pool_embedding
from model_server.training import TrainConfig, train_decoder

STRATEGIES = ("upload", "random-0", "random-1", "random-2", "uncertainty", "diversity", "mix")


def annotate(model: Sam, samples: list[MaskSample], max_clicks: int) -> list[MaskSample]:
    """The simulated annotator of engine_loop, its accepted masks as training samples."""
    masks, _ = annotate_masks(model, samples, 0.85, max_clicks)
    return [MaskSample(s.embedding, s.original_size, s.input_size, m) for s, m in zip(samples, masks)]


class PoolImage:
    """One pool image: its objects (samples sharing one embedding) and its pooled vector."""

    def __init__(self, samples: list[MaskSample]) -> None:
        self.samples = samples
        first = samples[0]
        self.pooled = pool_embedding(first.embedding, first.input_size)


def figures(model: Sam, images: list[PoolImage]) -> list[dict[str, float]]:
    return [
        candidate_figures(model, im.samples[0].embedding, im.samples[0].original_size, im.samples[0].input_size)
        for im in images
    ]


def one_click_error(model: Sam, image: PoolImage) -> float:
    """1 - mean single-click IoU of the image's objects under `model` (what the model gets wrong)."""
    return 1 - evaluate(model, image.samples, max_clicks=1, iou_targets=(0.85,))["miou_1pt"]


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if np.std(ra) and np.std(rb) else float("nan")


def pick(
    strategy: str,
    model: Sam,
    pool: list[PoolImage],
    left: list[int],
    taken: list[int],
    budget: int,
    known: list[dict[str, float]] | None,
) -> list[int]:
    """The next `budget` pool indices under `strategy` (from `left`, with `taken` annotated);
    `known`: the pool's figures under `model` when already computed (the initial model's)."""
    if strategy == "upload":
        return left[:budget]
    if strategy.startswith("random"):
        rng = np.random.default_rng(int(strategy.split("-")[1]))
        return [left[i] for i in rng.permutation(len(left))[:budget]]
    vectors = np.stack([pool[i].pooled for i in left])
    chosen = np.stack([pool[i].pooled for i in taken]) if taken else None
    if strategy == "diversity":
        return [left[i] for i in greedy_order(vectors, chosen)[:budget]]
    from model_server.selection import UNCERTAINTY

    scored = [known[i] for i in left] if known is not None else figures(model, [pool[i] for i in left])
    uncertainty = np.array([f[UNCERTAINTY] for f in scored])
    if strategy == "uncertainty":
        return [left[i] for i in np.argsort(-uncertainty, kind="stable")[:budget]]
    return [left[i] for i in greedy_order(vectors, chosen, uncertainty)[:budget]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=80, help="the first N DAVIS-345 frames (whole sequences)")
    parser.add_argument("--held-out-every", type=int, default=4, help="every k-th sequence is held out")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--budget", type=int, default=6, help="images annotated per round, every strategy")
    parser.add_argument("--steps-per-round", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=8e-4)
    parser.add_argument("--max-clicks", type=int, default=5, help="the simulated annotator's clicks per mask")
    parser.add_argument("--max-side", type=int, default=480)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initial weights")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated, run in this order")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/dataengine-engine-loop"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()

    items = read_manifest(DATA)[: args.frames]
    groups = sequences(items)
    held_groups = [g for k, g in enumerate(groups) if k % args.held_out_every == args.held_out_every - 1]
    pool_index = [i for k, g in enumerate(groups) if k % args.held_out_every != args.held_out_every - 1 for i in g]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    model0 = build_sam("vit_t", seed=args.seed)
    predictor = Predictor(model0)

    def samples_of(i: int) -> list[MaskSample]:
        return cached_samples(predictor, items[i], args.cache_dir, f"vit_t/{args.seed}", args.max_side)

    held = [s for g in held_groups for i in g for s in samples_of(i)]
    pool = [PoolImage(found) for i in pool_index if (found := samples_of(i))]
    print(
        f"{len(groups)} sequences in {len(items)} frames: {len(held_groups)} held out "
        f"({sum(map(len, held_groups))} frames, {len(held)} masks), pool {len(pool)} frames; "
        f"{time.perf_counter() - start:.0f} s",
        file=sys.stderr,
        flush=True,
    )

    # Which uncertainty figure tracks the initial model's real error?
    initial_figures = figures(model0, pool)
    errors = [one_click_error(model0, im) for im in pool]
    correlation = {name: spearman([f[name] for f in initial_figures], errors) for name in initial_figures[0]}
    print(f"figures and errors of {len(pool)} pool images in {time.perf_counter() - start:.0f} s", file=sys.stderr)

    base = evaluate(model0, held, max_clicks=3, iou_targets=(0.85,))
    rows = {name: [(base["miou_1pt"], base["miou_at_3"])] for name in args.strategies.split(",")}
    config = TrainConfig(
        steps=args.steps_per_round,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=min(10, args.steps_per_round),
        lr_decay_steps=(int(0.75 * args.steps_per_round),),
        clicks_per_sample=1,
        no_point_rounds=0,
        checkpoint_every=args.steps_per_round,
        focal_weight=1.0,
        dice_weight=1.0,
    )
    for name in rows:
        model = build_sam("vit_t", seed=args.seed)
        left, taken, collected = list(range(len(pool))), [], []
        for _ in range(args.rounds):
            chosen = pick(name, model, pool, left, taken, args.budget, None if taken else initial_figures)
            taken += chosen
            left = [i for i in left if i not in chosen]
            accepted = annotate(model, [s for i in chosen for s in pool[i].samples], args.max_clicks)
            collected += accepted
            train_decoder(model, collected, config)
            m = evaluate(model, held, max_clicks=3, iou_targets=(0.85,))
            rows[name].append((m["miou_1pt"], m["miou_at_3"]))
        print(f"{name}: {rows[name]} at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    print(
        f"\nDAVIS-345 first {len(items)} frames, {len(groups)} sequences, "
        f"{len(held_groups)} held out ({len(held)} masks), pool {len(pool)} frames; "
        f"{args.budget} images per round, {args.rounds} rounds, {args.steps_per_round} steps of batch "
        f"{args.batch_size} per round; vit_t seed {args.seed} (random weights, encoder frozen); "
        f"{(time.perf_counter() - start) / 60:.1f} min\n"
    )
    print("Uncertainty figures of the initial model vs its 1-click error on the pool (Spearman):\n")
    print("| figure | rank correlation |\n|---|---|")
    for figure, value in correlation.items():
        print(f"| {figure} | {value:+.3f} |")
    header = "| strategy | " + " | ".join(f"round {r} 1-click / @3" for r in range(args.rounds + 1)) + " |"
    print("\nHeld-out mIoU after 1 click / after 3 clicks, per round:\n")
    print(header)
    print("|" + "---|" * (args.rounds + 2))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{a:.3f} / {b:.3f}" for a, b in values) + " |")
    random_rows = [v for n, v in rows.items() if n.startswith("random")]
    if random_rows:
        mean = np.mean(np.array(random_rows), axis=0)
        print(f"| random (mean of {len(random_rows)}) | " + " | ".join(f"{a:.3f} / {b:.3f}" for a, b in mean) + " |")


if __name__ == "__main__":
    main()
