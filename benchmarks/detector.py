"""Box detector benchmark: training time, inference ms/image, held-out recall/precision@0.5 and AP50.

Embeds davis345 images with vit_t (seeded random weights unless --checkpoint is given), trains the
detector (`model_server.detector`) on 3 of every 4 images and evaluates on the 4th (a split by image
of frames of the same videos, as a project's own split would be), then prints a markdown table.
Run: ``python -m benchmarks.detector [--images 64] [--epochs 40] [--width 64] [--depth 3]``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model_server.detector import DetectorConfig, evaluate_detector, train_detector
from model_server.predictor import Predictor
from model_server.sam import build_sam

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis345"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args()

    masks: dict[str, list[str]] = {}
    with open(DATA / "manifest.csv") as f:
        for row in csv.DictReader(f):
            masks.setdefault(row["image"], []).append(row["mask"])
    names = sorted(masks)[:: max(1, len(masks) // args.images)][: args.images]
    predictor = Predictor(build_sam("vit_t", checkpoint=args.checkpoint, seed=0))
    samples, t0 = [], time.perf_counter()
    for name in names:
        predictor.set_image(np.asarray(Image.open(DATA / name).convert("RGB")))
        boxes = []
        for mask_name in masks[name]:
            ys, xs = np.nonzero(np.asarray(Image.open(DATA / mask_name)) > 0)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        samples.append(
            (
                predictor.embedding[0].numpy().astype(np.float16),
                predictor.original_size,
                predictor.input_size,
                np.array(boxes, dtype=np.float32),
            )
        )
    embed_s = time.perf_counter() - t0
    train = [s for i, s in enumerate(samples) if i % 4 != 3]
    heldout = [s for i, s in enumerate(samples) if i % 4 == 3]

    config = DetectorConfig(epochs=args.epochs, width=args.width, depth=args.depth)
    t0 = time.perf_counter()
    detector, metrics = train_detector(train, config)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for embedding, original, inner, _ in heldout:
        detector.predict(embedding, original, inner, score_thresh=0.05)
    infer_ms = (time.perf_counter() - t0) / len(heldout) * 1000
    result = evaluate_detector(detector, heldout, score_thresh=0.5)
    weights = "vit_t " + ("checkpoint " + args.checkpoint.name if args.checkpoint else "random (seed 0)")
    print(
        f"\nDetector on davis345 ({weights}; {torch.get_num_threads()} torch threads; "
        f"config width {args.width} depth {args.depth} epochs {args.epochs})\n"
    )
    print(
        "| train images / boxes | held-out images / boxes | embed s/img | train s | infer ms/img | "
        "recall@0.5 (score>=0.5) | precision@0.5 | recall@0.5 (any score) | AP50 | calibration |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    cal = metrics["calibration"]
    print(
        f"| {len(train)} / {sum(len(s[3]) for s in train)} | {len(heldout)} / {result['boxes']} | "
        f"{embed_s / len(samples):.2f} | {train_s:.1f} | {infer_ms:.1f} | {result['recall_50']:.3f} | "
        f"{result['precision_50']:.3f} | {result['recall_50_any']:.3f} | {result['ap50']:.3f} | "
        f"{cal['fitted']} a={cal['a']:.2f} b={cal['b']:.2f} |"
    )


if __name__ == "__main__":
    main()
