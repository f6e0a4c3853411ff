"""The automatic mask generator against the official one, on the same seeded random vit_t weights.

Random weights give masks with low-magnitude logits (stability 0 at offset 1) whose boxes all cover
the whole image, so the comparisons below (a) scale the hypernetwork outputs by AMPLIFY on both
models, which makes stability scores spread over 0..1, (b) lower pred_iou_thresh and
stability_score_thresh identically on both sides so that each side keeps ≥ 20 masks, and (c) set
box/crop NMS thresholds to 1.0 where every box is the whole image (otherwise one mask survives).
Our NMS itself is checked separately, against a brute-force greedy NMS over pycocotools IoUs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from model_server.amg import AutomaticMaskGenerator, build_point_grid, generate_crop_boxes
from model_server.boxes import batched_nms, masks_to_boxes
from model_server.regions import remove_small_regions
from model_server.rle import coco_decode, masks_to_rle, rle_area, rle_to_mask
from model_server.sam.build import SAM_CONFIGS, build_sam
from tests.reference import official

AMPLIFY = 20.0
LOWERED = {"pred_iou_thresh": 0.02, "stability_score_thresh": 0.4, "box_nms_thresh": 1.0, "crop_nms_thresh": 1.0}


@pytest.fixture(scope="module")
def models():
    ours = build_sam("vit_t", seed=0)
    with torch.no_grad():
        for mlp in ours.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(AMPLIFY)
            mlp.layers[-1].bias.mul_(AMPLIFY)
    sa = official()
    from segment_anything.build_sam import _build_sam

    config = SAM_CONFIGS["vit_t"]
    reference = _build_sam(
        config["embed_dim"], config["depth"], config["num_heads"], list(config["global_attn_indexes"])
    )
    reference.load_state_dict(ours.state_dict())
    return ours, reference.eval(), sa


@pytest.fixture(scope="module")
def image(data_root) -> np.ndarray:
    path = sorted((data_root / "grabcut" / "images").iterdir())[0]
    return np.asarray(Image.open(path).convert("RGB"))


def _coco(records):
    return [{"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()} for r in records]


def _assert_matched(ours, theirs, min_masks=20):
    assert len(ours) >= min_masks and len(theirs) >= min_masks, (len(ours), len(theirs))
    iou = coco_mask.iou(_coco(ours), _coco(theirs), [0] * len(theirs))
    ours_matched = (iou.max(axis=1) >= 0.9).mean()
    theirs_matched = (iou.max(axis=0) >= 0.9).mean()
    assert ours_matched >= 0.95 and theirs_matched >= 0.95, (ours_matched, theirs_matched)


@pytest.mark.parametrize(
    "crops",
    [
        {"points_per_side": 5},
        # Layer 1 adds 4 crops with 2x2 points each (downscale factor 2); small holes and islands removed.
        {"points_per_side": 5, "crop_n_layers": 1, "crop_n_points_downscale_factor": 2, "min_mask_region_area": 50},
    ],
    ids=["no-crops", "crops"],
)
def test_same_masks_as_official(models, image, crops):
    ours_model, reference, sa = models
    params = {**LOWERED, **crops, "output_mode": "coco_rle"}
    ours = AutomaticMaskGenerator(ours_model, **params).generate(image)
    theirs = sa.SamAutomaticMaskGenerator(reference, **params).generate(image)
    _assert_matched(ours, theirs)
    # The filters really filtered: fewer masks than 3 per prompt survived on both sides.
    prompts = 25 + (4 * 4 if "crop_n_layers" in crops else 0)
    assert len(ours) < 3 * prompts and len(theirs) < 3 * prompts
    assert {tuple(r["crop_box"]) for r in ours} == {tuple(r["crop_box"]) for r in theirs}
    # Each of our masks has its twin: same prompt point and predicted IoU, same box and area.
    for record in ours:
        twins = [
            r
            for r in theirs
            if np.allclose(r["point_coords"], record["point_coords"])
            and abs(r["predicted_iou"] - record["predicted_iou"]) < 1e-4
        ]
        assert len(twins) == 1, record
        twin = twins[0]
        np.testing.assert_allclose(record["bbox"], twin["bbox"], atol=1)
        assert record["area"] == pytest.approx(twin["area"], rel=0.005)
        assert record["stability_score"] == pytest.approx(twin["stability_score"], abs=1e-4)


def test_gated_decode_equals_predictor_decode(models, image):
    ours_model, _, _ = models
    generator = AutomaticMaskGenerator(ours_model, points_per_side=2, pred_iou_thresh=0.02)
    generator.predictor.set_image(image)
    points = torch.tensor([[100.0, 200.0], [500.0, 300.0], [900.0, 50.0]])
    with torch.inference_mode():
        low_res, iou, index = generator._decode(points)
        coords = torch.cat([points[:, None], torch.zeros(3, 1, 2)], dim=1)
        labels = torch.tensor([[1, -1]] * 3)
        all_low_res, all_iou = generator.predictor.decode(coords, labels, None, multimask_output=True)
    passing = all_iou > 0.02
    assert 0 < passing.sum() < 9
    torch.testing.assert_close(low_res, all_low_res[passing], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(iou, all_iou[passing])
    assert index.tolist() == torch.nonzero(passing)[:, 0].tolist()


def test_nothing_passes_gives_empty_list(models):
    ours_model, _, _ = models
    flat = np.full((64, 96, 3), 127, dtype=np.uint8)
    generator = AutomaticMaskGenerator(ours_model, points_per_side=3, pred_iou_thresh=1.0)
    assert generator.generate(flat) == []


def test_output_modes_round_trip(models, image):
    ours_model, _, _ = models
    small = image[::2, ::2].copy()
    params = {**LOWERED, "points_per_side": 3}
    binary_generator = AutomaticMaskGenerator(ours_model, **params)
    binary = binary_generator.generate(small)
    # A cached embedding replaces the encoder run and gives the same masks.
    embedding = binary_generator.predictor.embedding.clone()
    rle = AutomaticMaskGenerator(ours_model, **params, output_mode="uncompressed_rle").generate(small, embedding)
    coco = AutomaticMaskGenerator(ours_model, **params, output_mode="coco_rle").generate(small, embedding)
    assert len(binary) == len(rle) == len(coco) > 0
    for b, u, c in zip(binary, rle, coco):
        assert b["segmentation"].shape == small.shape[:2] and b["segmentation"].dtype == bool
        np.testing.assert_array_equal(rle_to_mask(u["segmentation"]), b["segmentation"])
        np.testing.assert_array_equal(coco_decode(c["segmentation"]), b["segmentation"])
        assert isinstance(c["segmentation"]["counts"], str)
        assert (
            b["area"]
            == int(b["segmentation"].sum())
            == coco_mask.area({"size": c["segmentation"]["size"], "counts": c["segmentation"]["counts"].encode()})
        )
        x, y, w, h = b["bbox"]
        ys, xs = np.nonzero(b["segmentation"])
        assert [x, y, x + w, y + h] == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert all(isinstance(v, int) for v in b["bbox"] + b["crop_box"])
        assert set(b) == {
            "segmentation",
            "area",
            "bbox",
            "predicted_iou",
            "point_coords",
            "stability_score",
            "crop_box",
        }


@pytest.mark.parametrize(
    "params",
    [
        {"points_per_side": 0},
        {"points_per_side": -4},
        {"points_per_side": 2.5},
        {"pred_iou_thresh": 1.5},
        {"stability_score_thresh": -0.1},
        {"box_nms_thresh": 2.0},
        {"crop_nms_thresh": float("nan")},
        {"output_mode": "polygon"},
        {"points_per_side": None},
        {"point_grids": [build_point_grid(4)]},
        {"points_per_side": None, "point_grids": [np.array([[0.5, 1.5]])]},
        {"points_per_side": None, "point_grids": [build_point_grid(2)], "crop_n_layers": 1},
        {"points_per_batch": 0},
        {"crop_n_layers": -1},
        {"points_per_side": 2, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2},
        {"min_mask_region_area": -5},
    ],
)
def test_bad_parameters_are_clear_errors(models, params):
    with pytest.raises(ValueError):
        AutomaticMaskGenerator(models[0], **params)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), [[1, 2, 3]]],
)
def test_bad_images_are_clear_errors(models, bad):
    with pytest.raises(ValueError):
        AutomaticMaskGenerator(models[0], points_per_side=2).generate(bad)


def test_crop_boxes_and_grid_match_official(models):
    from segment_anything.utils import amg

    for size, layers, ratio in [((321, 481), 2, 512 / 1500), ((1000, 700), 1, 0.2), ((50, 50), 3, 0.5)]:
        assert generate_crop_boxes(size, layers, ratio) == amg.generate_crop_boxes(size, layers, ratio)
    np.testing.assert_allclose(build_point_grid(7), amg.build_point_grid(7))


def test_rle_and_boxes_match_official(models):
    from segment_anything.utils import amg

    rng = np.random.default_rng(0)
    masks = torch.from_numpy(rng.random((6, 37, 23)) > 0.7)
    masks[2] = False
    masks[3] = True
    masks[4, 5:9, 3:7] = True
    assert masks_to_rle(masks) == amg.mask_to_rle_pytorch(masks)
    assert [rle_area(r) for r in masks_to_rle(masks)] == masks.flatten(1).sum(1).tolist()
    torch.testing.assert_close(masks_to_boxes(masks), amg.batched_mask_to_box(masks))


def _greedy_nms(boxes: list[list[float]], scores: list[float], categories: list[int], threshold: float) -> list[int]:
    """Textbook greedy NMS, one category at a time, written to share nothing with ours: repeatedly keep
    the best-scored remaining box (the earlier one on a tie) and drop the remaining boxes of its
    category whose IoU with it exceeds `threshold`. IoUs come from pycocotools (XYWH boxes, area w·h,
    as torchvision has it). Returns the kept indices best first, ties by index."""
    xywh = [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in boxes]
    ious = coco_mask.iou(xywh, xywh, [0] * len(xywh))
    kept = []
    for category in set(categories):
        remaining = [i for i, c in enumerate(categories) if c == category]
        while remaining:
            best = max(remaining, key=lambda i: (scores[i], -i))
            kept.append(best)
            remaining = [i for i in remaining if i != best and ious[best][i] <= threshold]
    return sorted(kept, key=lambda i: (-scores[i], i))


def test_nms_matches_brute_force_greedy_nms():
    rng = np.random.default_rng(0)
    corners = torch.from_numpy(rng.integers(0, 200, (300, 2, 2))).sort(dim=1).values.float()
    boxes = corners.transpose(1, 2).reshape(300, 4)[:, [0, 2, 1, 3]]
    scores = torch.from_numpy(rng.integers(0, 20, 300)).float()  # many ties
    for categories in (torch.from_numpy(rng.integers(0, 3, 300)), torch.zeros(300, dtype=torch.int64)):
        for threshold in (0.0, 0.3, 0.5, 0.7, 1.0):
            expected = _greedy_nms(boxes.tolist(), scores.tolist(), categories.tolist(), threshold)
            assert batched_nms(boxes, scores, categories, threshold).tolist() == expected
    assert batched_nms(boxes[:0], scores[:0], categories[:0], 0.5).tolist() == []


def test_small_region_removal_matches_official(models, data_root):
    from segment_anything.utils import amg

    path = sorted((data_root / "davis345" / "masks").iterdir())[0]
    mask = np.asarray(Image.open(path)) > 127
    rng = np.random.default_rng(1)
    noisy = mask ^ (rng.random(mask.shape) > 0.995)  # speckle: small holes and islands
    noisy[:3, :] = True  # an island on the image edge
    for source in (mask, noisy, np.zeros_like(mask)):
        for mode in ("holes", "islands"):
            for area in (1, 30, 5000):
                ours, changed = remove_small_regions(source, area, mode)
                theirs, their_changed = amg.remove_small_regions(source, area, mode)
                assert changed == their_changed
                np.testing.assert_array_equal(ours, theirs)
