"""Automatic mask generation: our generator vs the official one, same weights, same run, this CPU.

    .venv/bin/python benchmarks/amg.py [--images 3] [--points-per-side 32] [--vit-b-images 1]

Weights are seeded random (no official checkpoint here). Random weights give near-zero stability
and whole-image boxes, so, as in tests/model_server/test_amg.py, both models get the same
hypernetwork output scaled by AMPLIFY and both generators the same lowered thresholds (THRESHOLDS);
everything else is the official default. Prints a markdown table: seconds per image (encoder
included), masks found by each, and agreement (share of each side's masks matched by a mask of the
other side with IoU ≥ 0.9).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as coco_mask

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model_server.amg import AutomaticMaskGenerator  # noqa: E402
from model_server.sam.build import SAM_CONFIGS, build_sam  # noqa: E402
from tests.reference import official  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "grabcut" / "images"
AMPLIFY = 20.0
THRESHOLDS = {"pred_iou_thresh": 0.02, "stability_score_thresh": 0.4, "box_nms_thresh": 1.0}


def models(name: str):
    ours = build_sam(name, seed=0)
    with torch.no_grad():
        for mlp in ours.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(AMPLIFY)
            mlp.layers[-1].bias.mul_(AMPLIFY)
    official()
    from segment_anything.build_sam import _build_sam

    c = SAM_CONFIGS[name]
    reference = _build_sam(c["embed_dim"], c["depth"], c["num_heads"], list(c["global_attn_indexes"]))
    reference.load_state_dict(ours.state_dict())
    return ours, reference.eval()


def agreement(a: list[dict], b: list[dict]) -> tuple[float, float]:
    if not a or not b:
        return float(not a and not b), float(not a and not b)

    def enc(recs: list[dict]) -> list[dict]:
        return [{"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()} for r in recs]

    iou = coco_mask.iou(enc(a), enc(b), [0] * len(b))
    return float((iou.max(1) >= 0.9).mean()), float((iou.max(0) >= 0.9).mean())


def timed(generator, image):
    start = time.perf_counter()
    records = generator.generate(image)
    return time.perf_counter() - start, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--vit-b-images", type=int, default=1)
    parser.add_argument("--points-per-side", type=int, default=32)
    args = parser.parse_args()
    sa = official()
    paths = sorted(DATA.iterdir())
    params = {**THRESHOLDS, "points_per_side": args.points_per_side, "output_mode": "coco_rle"}
    rows = []
    for name, count in (("vit_t", args.images), ("vit_b", args.vit_b_images)):
        if count == 0:
            continue
        ours_model, reference = models(name)
        ours_gen = AutomaticMaskGenerator(ours_model, **params)
        ref_gen = sa.SamAutomaticMaskGenerator(reference, **params)
        for path in paths[:count]:
            image = np.asarray(Image.open(path).convert("RGB"))
            t_ours, ours = timed(ours_gen, image)
            t_ref, theirs = timed(ref_gen, image)
            a, b = agreement(ours, theirs)
            rows.append(
                (name, path.name, f"{image.shape[1]}x{image.shape[0]}", t_ref, t_ours, len(theirs), len(ours), a, b)
            )
            print(rows[-1], flush=True)
    print(
        f"\npoints_per_side={args.points_per_side}, {THRESHOLDS}, hypernetwork ×{AMPLIFY}, torch threads={torch.get_num_threads()}\n"
    )
    print(
        "| model | image | size | official s | ours s | speed-up | masks official | masks ours | ours matched | official matched |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, image, size, t_ref, t_ours, n_ref, n_ours, a, b in rows:
        print(
            f"| {name} | {image} | {size} | {t_ref:.1f} | {t_ours:.1f} | {t_ref / t_ours:.2f}× | {n_ref} | {n_ours} | {a:.1%} | {b:.1%} |"
        )


if __name__ == "__main__":
    main()
