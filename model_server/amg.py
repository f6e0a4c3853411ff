"""Fully automatic mask generation (the data engine's third stage): a grid of point prompts → masks.

The algorithm and every parameter are the official generator's (SAM paper §4 / App. A; see
`AutomaticMaskGenerator`): each grid point yields three masks (whole, part, subpart); masks are kept
when their predicted IoU exceeds `pred_iou_thresh` and their stability score (IoU of the mask
thresholded at ±`stability_score_offset`) reaches `stability_score_thresh`; masks whose box touches
a crop edge (not an image edge) are dropped; box NMS removes duplicates within a crop; overlapping
zoomed-in crops add small objects, and NMS across crops prefers the smaller crop; small holes and
islands can be removed, followed by another NMS.

Why it is faster than the official generator on the same weights, with the same decisions:
- prompts are decoded in batches against one broadcast embedding (no per-prompt copy);
- the decoder's two-way transformer runs in a batched, re-associated form (`_two_way`, the algebra
  of decoder_split.py): the first block's image-side projections are computed once per batch, and
  every attention between the 7 prompt tokens and the 4096 image rows folds its 4096-row
  projections into the tokens' side, so no 4096x256x128 projection is done per prompt, and adds
  the positional encoding's share of the scores with one product for all prompts instead of
  forming `keys + pe` per prompt;
- the output upscaling runs channels last as plain matrix products (`_upscaled_masks`), not
  ConvTranspose2d, which is slow on the CPU, a block of image rows at a time so that its large
  intermediates stay in the cache (on whole batches its GELUs alone cost more than its products);
- the mask decoder runs its transformer and IoU head for every prompt, but its costly output
  upscaling and mask products only for prompts with at least one mask above `pred_iou_thresh`
  (the IoU head does not depend on them: exact);
- the stability score is first estimated on the 256×256 logits; only masks within
  `stability_prefilter_margin` of the threshold or above it are upscaled to full resolution, where
  the exact score decides (as in the official code), as do boxes and the crop-edge test;
- boxes come from row/column projections, NMS is batched and vectorised, masks become RLE right
  after the full-resolution decisions, and no per-batch deep copies are made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .predictor import Predictor
from .rle import (
    batched_nms,
    box_xyxy_to_xywh,
    coco_encode,
    masks_to_boxes,
    masks_to_rle,
    remove_small_regions,
    rle_area,
    rle_to_mask,
)
from .sam import Sam
from .transforms import MODEL_SIZE, apply_coords

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
LOW_RES = 256
EDGE_TOLERANCE = 20.0  # pixels: a box this close to a crop edge (not an image edge) is cut off


def build_point_grid(n_per_side: int) -> np.ndarray:
    """n²x2 float64 (x, y) points, evenly spaced cell centres of the unit square, row by row."""
    side = (np.arange(n_per_side) + 0.5) / n_per_side
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def generate_crop_boxes(
    image_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """XYXY crop boxes (original frame) and their layer: the whole image, then (2^i)² overlapping
    crops for layer i = 1..n_layers. Neighbouring crops of layer i overlap by
    overlap_ratio · short side · 2 / 2^i pixels."""
    h, w = image_size
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * min(h, w) * 2 / per_side)
        crop_w = math.ceil((overlap * (per_side - 1) + w) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + h) / per_side)
        x_starts = [int((crop_w - overlap) * i) for i in range(per_side)]
        y_starts = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(x_starts, y_starts):
            boxes.append([x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)])
            layers.append(layer)
    return boxes, layers


@dataclass
class _Masks:
    """Masks kept so far, as parallel per-mask fields (RLEs in the original frame)."""

    rles: list[dict[str, Any]] = field(default_factory=list)
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))  # Kx4 XYXY
    iou: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # K predicted IoU
    stability: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # K
    points: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.float64))  # Kx2 (x, y)
    crop_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))  # Kx4 XYXY

    TENSORS = ("boxes", "iou", "stability", "points", "crop_boxes")

    def __len__(self) -> int:
        return len(self.rles)

    def take(self, index: torch.Tensor) -> _Masks:
        """The masks at `index` (int64 indices or a bool mask), in that order."""
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        return _Masks(
            [self.rles[i] for i in index.tolist()],
            self.boxes[index],
            self.iou[index],
            self.stability[index],
            self.points[index],
            self.crop_boxes[index],
        )

    @staticmethod
    def concat(parts: list[_Masks]) -> _Masks:
        if not parts:
            return _Masks()
        return _Masks(
            [r for p in parts for r in p.rles],
            *(torch.cat([getattr(p, name) for p in parts]) for name in _Masks.TENSORS),
        )


class AutomaticMaskGenerator:
    """Masks for a whole image from a grid of point prompts, the official generator's algorithm.

    Parameters (same names, defaults and meaning as the official `SamAutomaticMaskGenerator`):
      points_per_side: grid points along each side (points_per_side² prompts); None when
          `point_grids` is given instead.
      points_per_batch: prompts decoded together (memory: about 5 MB per prompt on the CPU).
      pred_iou_thresh: keep masks whose predicted IoU is above this, in [0, 1].
      stability_score_thresh: keep masks whose stability score is at least this, in [0, 1].
      stability_score_offset: the logit offset δ of the stability score #(logits > δ)/#(logits > −δ).
      box_nms_thresh: box IoU above which a lower-scored mask of the same crop is a duplicate.
      crop_n_layers: extra crop layers; layer i has (2^i)² overlapping crops.
      crop_nms_thresh: box IoU above which masks from different crops are duplicates (smaller crop wins).
      crop_overlap_ratio: crop overlap in layer 1 as a fraction of the short side (halved per layer).
      crop_n_points_downscale_factor: layer i uses points_per_side / factor^i points per side.
      point_grids: explicit Nx2 (x, y) grids in [0, 1], one per layer (exclusive with points_per_side).
      min_mask_region_area: if > 0, fill holes and drop islands smaller than this many pixels, then
          NMS again preferring untouched masks.
      output_mode: "binary_mask" (HxW bool), "uncompressed_rle" or "coco_rle" (SA-1B).
    Our own speed knobs (they never change which masks come out beyond float rounding):
      stability_prefilter_margin: masks whose low-resolution stability estimate is more than this
          below `stability_score_thresh` are dropped without full-resolution work. Measured on
          the random-weight test masks (grabcut images, vit_t): the 256² estimate was 0.05–0.31
          *above* the exact score, never below, so nothing the exact score keeps was dropped;
          this is a measurement, not a bound. 1.0 turns the prefilter off.
      upscale_batch: masks upscaled to full resolution together (memory: 4·H·W bytes each).
    """

    def __init__(
        self,
        model: Sam,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        *,
        stability_prefilter_margin: float = 0.1,
        upscale_batch: int = 16,
    ) -> None:
        _check_int("points_per_batch", points_per_batch, 1)
        _check_int("crop_n_layers", crop_n_layers, 0)
        _check_int("crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1)
        _check_int("upscale_batch", upscale_batch, 1)
        _check_number("min_mask_region_area", min_mask_region_area, 0, math.inf)
        for name, value in (
            ("pred_iou_thresh", pred_iou_thresh),
            ("stability_score_thresh", stability_score_thresh),
            ("box_nms_thresh", box_nms_thresh),
            ("crop_nms_thresh", crop_nms_thresh),
            ("stability_prefilter_margin", stability_prefilter_margin),
        ):
            _check_number(name, value, 0.0, 1.0)
        _check_number("stability_score_offset", stability_score_offset, 0.0, math.inf)
        _check_number("crop_overlap_ratio", crop_overlap_ratio, 0.0, 1.0)
        if crop_overlap_ratio == 1.0:
            raise ValueError("crop_overlap_ratio must be below 1")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"unknown output_mode {output_mode!r}; expected one of {', '.join(OUTPUT_MODES)}")
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if points_per_side is not None:
            _check_int("points_per_side", points_per_side, 1)
            self.point_grids = []
            for layer in range(crop_n_layers + 1):
                n = int(points_per_side / crop_n_points_downscale_factor**layer)
                if n < 1:
                    raise ValueError(
                        f"crop layer {layer} gets no points: points_per_side {points_per_side} / "
                        f"crop_n_points_downscale_factor {crop_n_points_downscale_factor}^{layer} < 1"
                    )
                self.point_grids.append(build_point_grid(n))
        else:
            self.point_grids = [_check_grid(i, g) for i, g in enumerate(point_grids)]
            if len(self.point_grids) < crop_n_layers + 1:
                raise ValueError(
                    f"point_grids has {len(self.point_grids)} grids; crop_n_layers {crop_n_layers} "
                    f"needs {crop_n_layers + 1}"
                )

        self.predictor = Predictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.stability_prefilter_margin = float(stability_prefilter_margin)
        self.upscale_batch = upscale_batch

    @torch.inference_mode()
    def generate(self, image: np.ndarray, embedding: np.ndarray | torch.Tensor | None = None) -> list[dict[str, Any]]:
        """Masks for an HxWx3 uint8 RGB image, as SA-1B-style records (original frame).

        embedding: the image's 1x256x64x64 embedding if already computed (e.g. cached by the
        backend); it replaces the encoder run for the whole-image crop only.
        Each record: segmentation (HxW bool array or RLE dict, per output_mode), area (int pixels),
        bbox [x, y, w, h], predicted_iou, point_coords [[x, y]], stability_score, crop_box [x, y, w, h].
        An image where no mask passes the filters gives [].
        """
        _check_image(image)
        size = (image.shape[0], image.shape[1])
        crop_boxes, layers = generate_crop_boxes(size, self.crop_n_layers, self.crop_overlap_ratio)
        masks = _Masks.concat(
            [
                self._process_crop(image, box, layer, embedding if layer == 0 else None)
                for box, layer in zip(crop_boxes, layers)
            ]
        )
        if len(crop_boxes) > 1 and len(masks):
            crops = masks.crop_boxes
            crop_area = (crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1])
            keep = batched_nms(masks.boxes.float(), 1 / crop_area, torch.zeros(len(masks)), self.crop_nms_thresh)
            masks = masks.take(keep)
        if self.min_mask_region_area > 0 and len(masks):
            masks = self._remove_small_regions(masks)
        return [self._record(masks, i) for i in range(len(masks))]

    # -- one crop --------------------------------------------------------------------------------

    def _process_crop(
        self, image: np.ndarray, crop_box: list[int], layer: int, embedding: np.ndarray | torch.Tensor | None
    ) -> _Masks:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        crop_size = (crop.shape[0], crop.shape[1])
        if embedding is not None:
            self.predictor.set_embedding(embedding, crop_size)
        else:
            self.predictor.set_image(np.ascontiguousarray(crop))
        points = self.point_grids[layer] * np.array([crop_size[1], crop_size[0]])  # Nx2 (x, y), crop frame
        model_points = torch.as_tensor(apply_coords(points, crop_size, MODEL_SIZE), dtype=torch.float32)

        parts = []
        for start in range(0, len(points), self.points_per_batch):
            stop = start + self.points_per_batch
            batch_points = torch.as_tensor(points[start:stop])
            parts.append(self._process_batch(model_points[start:stop], batch_points, crop_box, image.shape[:2]))
        masks = _Masks.concat(parts)
        if len(masks):
            keep = batched_nms(masks.boxes.float(), masks.iou, torch.zeros(len(masks)), self.box_nms_thresh)
            masks = masks.take(keep)
        masks.boxes = masks.boxes + torch.tensor([x0, y0, x0, y0])
        masks.points = masks.points + torch.tensor([x0, y0], dtype=torch.float64)
        masks.crop_boxes = torch.tensor([crop_box], dtype=torch.int64).expand(len(masks), 4)
        return masks

    def _process_batch(
        self, model_points: torch.Tensor, points: torch.Tensor, crop_box: list[int], image_size: tuple[int, int]
    ) -> _Masks:
        """model_points Bx2 float32 (1024 model frame), points Bx2 float64 (crop frame) → kept masks
        with boxes in the crop frame and RLEs in the original frame."""
        low_res, iou, point_index = self._decode(model_points)
        keep = self._low_res_stability(low_res) >= self.stability_score_thresh - self.stability_prefilter_margin
        low_res, iou, point_index = low_res[keep], iou[keep], point_index[keep]

        offset, threshold = self.stability_score_offset, self.predictor.model.mask_threshold
        crop_h, crop_w = self.predictor.original_size
        x0, y0, _, _ = crop_box
        image_h, image_w = image_size
        parts = []
        for start in range(0, len(low_res), self.upscale_batch):
            chunk = slice(start, start + self.upscale_batch)
            logits = self.predictor.upscale(low_res[chunk, None])[:, 0]  # KxHxW, crop frame
            # Stability as the official code counts it (int16 row sums, int32 totals, float ratio).
            inter = (logits > threshold + offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
            union = (logits > threshold - offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
            stability = inter / union
            good = stability >= self.stability_score_thresh
            if self.stability_score_thresh <= 0:  # as the official: no stability filter at 0 (keeps NaN)
                good = torch.ones_like(good)
            binary = logits[good] > threshold
            del logits
            boxes = masks_to_boxes(binary)
            inside = ~_near_crop_edge(boxes, crop_box, image_size)
            binary, boxes = binary[inside], boxes[inside]
            full = F.pad(binary, (x0, image_w - crop_w - x0, y0, image_h - crop_h - y0))  # original frame
            selected = torch.nonzero(good).flatten()[inside]
            parts.append(
                _Masks(
                    masks_to_rle(full),
                    boxes,
                    iou[chunk][selected].float(),
                    stability[selected],
                    points[point_index[chunk][selected]],
                    torch.zeros(len(boxes), 4, dtype=torch.int64),
                )
            )
        return _Masks.concat(parts)

    def _decode(self, model_points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bx2 prompts (model frame) → masks above pred_iou_thresh: (low-res logits Kx256x256,
        predicted IoU K, prompt index K), prompt-major then whole/part/subpart.

        The decoder's transformer and IoU head run for all prompts; its output upscaling and mask
        products only for prompts with a mask that passes. `Predictor.decode` computes the same
        masks for every prompt (a test checks the two agree); this split is ours, on the decoder's
        own submodules.
        """
        model = self.predictor.model
        decoder = model.mask_decoder
        batch = model_points.shape[0]
        coords = torch.cat([model_points[:, None, :], torch.zeros(batch, 1, 2)], dim=1)
        labels = torch.tensor([[1, -1]]).expand(batch, 2)
        sparse = model.prompt_encoder.embed_points(coords.to(model.device, model.dtype), labels.to(model.device))
        dense = model.prompt_encoder.embed_masks(None)
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(batch, -1, -1).to(sparse.dtype), sparse], dim=1)
        hs, src = _two_way(
            decoder.transformer,
            self.predictor.embedding + dense,
            model.prompt_encoder.get_dense_pe(),
            tokens,
            len(output_tokens),
        )
        iou = decoder.iou_prediction_head(hs[:, 0, :])[:, 1:]  # Bx3: the multimask tokens 1–3
        passing = iou > self.pred_iou_thresh if self.pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
        prompts = torch.nonzero(passing.any(dim=1)).flatten()
        if len(prompts) == 0:
            return torch.zeros(0, LOW_RES, LOW_RES), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        hyper = torch.stack([decoder.output_hypernetworks_mlps[i](hs[prompts, 1 + i, :]) for i in (1, 2, 3)], dim=1)
        low_res = _upscaled_masks(decoder.output_upscaling, src, prompts, hyper)
        keep = passing[prompts]
        point_index = prompts[:, None].expand(-1, 3)[keep]
        return low_res[keep].float(), iou[prompts][keep].float(), point_index

    def _low_res_stability(self, low_res: torch.Tensor) -> torch.Tensor:
        """Kx256x256 logits → K stability estimates over the part of the grid that holds the image."""
        if self.stability_score_thresh <= 0 or self.stability_prefilter_margin >= 1:
            return torch.ones(low_res.shape[0])
        in_h, in_w = self.predictor.input_size
        scale = LOW_RES / MODEL_SIZE
        valid = low_res[:, : math.ceil(in_h * scale), : math.ceil(in_w * scale)]
        threshold, offset = self.predictor.model.mask_threshold, self.stability_score_offset
        inter = (valid > threshold + offset).flatten(1).sum(1)
        union = (valid > threshold - offset).flatten(1).sum(1)
        return inter / union.clamp(min=1)

    # -- post-processing -------------------------------------------------------------------------

    def _remove_small_regions(self, masks: _Masks) -> _Masks:
        """Fill small holes, drop small islands, then NMS again preferring untouched masks."""
        new_rles, new_boxes, unchanged = [], [], []
        for rle in masks.rles:
            mask = rle_to_mask(rle)
            mask, holes = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, islands = remove_small_regions(mask, self.min_mask_region_area, "islands")
            changed = holes or islands
            mask_t = torch.from_numpy(mask)[None]
            new_boxes.append(masks_to_boxes(mask_t)[0])
            new_rles.append(masks_to_rle(mask_t)[0] if changed else rle)
            unchanged.append(0.0 if changed else 1.0)
        boxes = torch.stack(new_boxes)
        threshold = max(self.box_nms_thresh, self.crop_nms_thresh)
        keep = batched_nms(boxes.float(), torch.tensor(unchanged), torch.zeros(len(boxes)), threshold)
        masks = _Masks(new_rles, boxes, masks.iou, masks.stability, masks.points, masks.crop_boxes)
        return masks.take(keep)

    def _record(self, masks: _Masks, i: int) -> dict[str, Any]:
        rle = masks.rles[i]
        if self.output_mode == "binary_mask":
            segmentation: Any = rle_to_mask(rle)
        elif self.output_mode == "coco_rle":
            segmentation = coco_encode(rle)
        else:
            segmentation = rle
        return {
            "segmentation": segmentation,
            "area": rle_area(rle),
            "bbox": box_xyxy_to_xywh(masks.boxes[i]),
            "predicted_iou": float(masks.iou[i]),
            "point_coords": [masks.points[i].tolist()],
            "stability_score": float(masks.stability[i]),
            "crop_box": box_xyxy_to_xywh(masks.crop_boxes[i]),
        }


# -- the decoder's two-way transformer for many prompts on one image ---------------------------------
#
# The same algebra as model_server/decoder_split.py (the browser's per-click graph), batched over
# prompts: in every attention between the T prompt tokens and the 4096 image positions, the 4096-row
# projections (256 -> 128 in, 128 -> 256 out) are folded into the tokens' side per head, so a prompt
# costs 4096 x 256 x 8T multiply-adds per product (T = 7 tokens, 5 in the final attention) instead of
# 4096 x 256 x 128. decoder_split's modules are written for one prompt (batch 1, ONNX-exportable), so
# the batched form lives here.


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """BxTx(h·d) -> BxhxTxd."""
    b, t, c = x.shape
    return x.reshape(b, t, num_heads, c // num_heads).transpose(1, 2)


def _token_to_image(
    attn: torch.nn.Module, queries: torch.Tensor, keys: torch.Tensor, key_pe: torch.Tensor
) -> torch.Tensor:
    """`attn(queries, keys + key_pe, keys)` for BxTx256 tokens attending to Bx4096x256 image rows;
    key_pe 1x4096x256, shared by all prompts.

    Per head h: scores = (q_h W_kh) (K + PE)^T (k_proj's bias adds a constant per score row: softmax
    ignores it) and out_h = (P_h K) W_vh^T + b_vh (softmax rows sum to 1). The positional part of the
    scores is one product for all prompts, so `keys + key_pe` is never formed per prompt.
    """
    h = attn.num_heads
    q = _heads(attn.q_proj(queries), h)  # BxhxTxd
    b, _, t, d = q.shape
    w_k = attn.k_proj.weight.reshape(h, d, -1)  # hxdx256
    q_abs = (q @ w_k).reshape(b, h * t, -1) * d**-0.5  # Bx(hT)x256
    # Scores as (hT)x4096 rows so that the softmax over image rows runs along contiguous memory.
    scores = (q_abs.reshape(b * h * t, -1) @ key_pe[0].T).reshape(b, h * t, -1)
    probs = torch.softmax(scores.baddbmm_(q_abs, keys.transpose(1, 2)), dim=-1)  # Bx(hT)x4096
    mixed = (probs @ keys).reshape(b, h, t, -1)  # BxhxTx256
    w_v = attn.v_proj.weight.reshape(h, d, -1)  # hxdx256
    out = (mixed @ w_v.transpose(1, 2)).transpose(1, 2).reshape(b, t, h * d) + attn.v_proj.bias
    return attn.out_proj(out)


def _image_to_token(
    attn: torch.nn.Module,
    image: torch.Tensor,
    image_pe: torch.Tensor | None,
    keys: torch.Tensor,
    values: torch.Tensor,
    residual: torch.Tensor,
) -> torch.Tensor:
    """`residual + attn(image + image_pe, keys, values)` for Bx4096x256 image rows attending to
    BxTx256 tokens; image_pe 1x4096x256 (shared); residual Bx4096x256 or 1x4096x256 (broadcast).

    Per head h: scores = X (W_qh^T k_h^T) + b_qh k_h^T and out = sum_h P_h (v_h W_oh^T) + b_o: the query
    and output projections are folded into the tokens' side; b_o / h goes into every head's values
    (each head's softmax row sums to 1); the positional part of the scores (with the bias) is one
    product for all prompts. image_pe None: `image` is already q_proj's output (1x4096x128 in the
    first block, shared by all prompts), and each head's scores for all prompts are one product.
    """
    h = attn.num_heads
    k = _heads(attn.k_proj(keys), h) * (attn.k_proj.out_features // h) ** -0.5  # BxhxTxd, scaled
    v = _heads(attn.v_proj(values), h)  # BxhxTxd
    b, _, t, d = k.shape
    # Scores as (hT)x4096 rows: the softmax over each head's T tokens then runs across rows, along
    # contiguous 4096-wide vectors (a softmax over a last dimension of 7 is several times slower).
    if image_pe is None:
        image_q = image[0].reshape(-1, h, d).permute(1, 2, 0)  # hxdx4096
        scores = (k.transpose(0, 1).reshape(h, b * t, d) @ image_q).reshape(h, b, t, -1)
        probs = torch.softmax(scores, dim=2).transpose(0, 1).reshape(b, h * t, -1)
    else:
        w_q = attn.q_proj.weight.reshape(h, d, -1)  # hxdx256
        k_abs = (k @ w_q).reshape(b, h * t, -1)  # Bx(hT)x256
        k_bias = (k @ attn.q_proj.bias.reshape(h, d, 1)).reshape(b * h * t, 1)
        scores = torch.addmm(k_bias, k_abs.reshape(b * h * t, -1), image_pe[0].T).reshape(b, h * t, -1)
        scores.baddbmm_(k_abs, image.transpose(1, 2))
        probs = torch.softmax(scores.reshape(b, h, t, -1), dim=2).reshape(b, h * t, -1)
    w_o = attn.out_proj.weight.reshape(-1, h, d).transpose(0, 1)  # hx256xd
    v_out = (v @ w_o.transpose(1, 2) + attn.out_proj.bias / h).reshape(b, h * t, -1)  # Bx(hT)x256
    return torch.baddbmm(residual.expand(b, -1, -1), probs.transpose(1, 2), v_out)  # probs^T: Bx4096x(hT)


def _two_way(transformer: torch.nn.Module, image: torch.Tensor, pe: torch.Tensor, tokens: torch.Tensor, n_out: int):
    """`transformer(image, pe, tokens)` for B prompts on one image, reading only the first n_out tokens.

    image, pe: 1x256x64x64 (embedding + dense prompt, positional encoding); tokens: BxTx256.
    Returns (the first n_out tokens Bxn_outx256, image rows Bx4096x256): equal to the module's
    (hs[:, :n_out], src) up to float rounding.
    """
    first, second = transformer.layers
    src = image.flatten(2).transpose(1, 2)  # 1x4096x256, shared
    key_pe = pe.flatten(2).transpose(1, 2)
    with_pe = src + key_pe

    # First block: its image side is the same for every prompt until its image→token attention.
    queries = first.norm1(first.self_attn(tokens, tokens, tokens))
    attn = first.cross_attn_token_to_image
    queries = first.norm2(queries + attn(queries + tokens, with_pe, src))  # k/v projected once (batch 1)
    queries = first.norm3(queries + first.mlp(queries))
    to_token = first.cross_attn_image_to_token
    image_q = to_token.q_proj(with_pe)  # 1x4096x128, shared
    keys = first.norm4(
        _image_to_token(to_token, image_q, None, queries + tokens, queries, src)
    )  # Bx4096x256, per prompt from here

    # Second block and the final attention, both cross-attentions folded into the tokens' side.
    q = queries + tokens
    queries = second.norm1(queries + second.self_attn(q, q, queries))
    queries = second.norm2(queries + _token_to_image(second.cross_attn_token_to_image, queries + tokens, keys, key_pe))
    queries = second.norm3(queries + second.mlp(queries))
    to_token = second.cross_attn_image_to_token
    keys = second.norm4(_image_to_token(to_token, keys, key_pe, queries + tokens, queries, keys))

    # Only the IoU and mask tokens are read after the final attention.
    queries, tokens = queries[:, :n_out], tokens[:, :n_out]
    final = _token_to_image(transformer.final_attn_token_to_image, queries + tokens, keys, key_pe)
    return transformer.norm_final_attn(queries + final), keys


def _upscaled_masks(
    upscaling: torch.nn.Sequential,
    src: torch.Tensor,
    prompts: torch.Tensor,
    hyper: torch.Tensor,
    rows: int = 1024,
) -> torch.Tensor:
    """The decoder's output upscaling and mask products, channels last, for the prompts `prompts`
    (K indices into src's B): src Bx4096x256 image rows (64x64, row-major), hyper KxMx32
    hypernetwork weights → KxMx256x256 low-res logits.

    Each kernel-2, stride-2 transposed convolution is one matrix product per input pixel
    (in -> (dy, dx, out)), and LayerNorm2d normalises each output pixel's channels, so every input
    row is upscaled on its own: `rows` of them at a time, so that the intermediates (1-2 MB for 1024
    rows) stay in the CPU's cache; a batch of 64 prompts at once made 270-540 MB per step, and the
    layer norm and GELUs, streaming that through memory, cost more than the products. The logits
    are put in raster order at the end.
    """
    up1, norm, act1, up2, act2 = upscaling
    n = src.shape[1]
    side = int(math.isqrt(n))
    w1 = up1.weight.permute(0, 2, 3, 1).reshape(up1.in_channels, -1)  # in x (dy, dx, out)
    w2 = up2.weight.permute(0, 2, 3, 1).reshape(up2.in_channels, -1)
    bias1, bias2 = up1.bias.repeat(4), up2.bias.repeat(4)
    out = torch.empty(len(prompts), n * 16, hyper.shape[1], dtype=src.dtype, device=src.device)
    for k, prompt in enumerate(prompts.tolist()):
        for start in range(0, n, rows):
            x = torch.addmm(bias1, src[prompt, start : start + rows], w1).view(-1, up1.out_channels)
            x = act1(F.layer_norm(x, (up1.out_channels,), norm.weight, norm.bias, norm.eps))
            x = act2(torch.addmm(bias2, x, w2)).view(-1, up2.out_channels)  # (rows·4·4)x32
            torch.mm(x, hyper[k].T, out=out[k, start * 16 : (start + rows) * 16])
    masks = out.view(-1, side, side, 2, 2, 2, 2, hyper.shape[1])  # y, x, dy, dx, dy2, dx2, M
    return masks.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(len(prompts), -1, side * 4, side * 4)


def _near_crop_edge(boxes: torch.Tensor, crop_box: list[int], image_size: tuple[int, int]) -> torch.Tensor:
    """Kx4 XYXY boxes (crop frame) → K bool: a side lies within EDGE_TOLERANCE of a crop edge that
    is not also an image edge (the object probably continues outside the crop)."""
    x0, y0, _, _ = crop_box
    h, w = image_size
    uncropped = (boxes + torch.tensor([x0, y0, x0, y0])).float()
    crop = torch.tensor(crop_box, dtype=torch.float32)
    whole = torch.tensor([0, 0, w, h], dtype=torch.float32)
    near_crop = (uncropped - crop).abs() <= EDGE_TOLERANCE
    near_image = (uncropped - whole).abs() <= EDGE_TOLERANCE
    return (near_crop & ~near_image).any(dim=1)


def _check_image(image: Any) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 RGB, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0–255), got {image.dtype}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")


def _check_grid(index: int, grid: Any) -> np.ndarray:
    array = np.asarray(grid, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
        raise ValueError(f"point_grids[{index}] must be a non-empty Nx2 array, got shape {array.shape}")
    if not (np.isfinite(array).all() and (array >= 0).all() and (array <= 1).all()):
        raise ValueError(f"point_grids[{index}] must hold (x, y) points in [0, 1]")
    return array
