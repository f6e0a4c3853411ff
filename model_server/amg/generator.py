"""`AutomaticMaskGenerator`: masks for a whole image from a grid of point prompts (see __init__.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..boxes import batched_nms, masks_to_boxes
from ..predictor import Predictor
from ..rle import masks_to_rle
from ..sam import Sam
from ..transforms import MODEL_SIZE, apply_coords
from .checks import check_grid, check_image, check_int, check_number
from .crops import build_point_grid, generate_crop_boxes, near_crop_edge
from .masks import OUTPUT_MODES, MaskSet, clean_regions, record

LOW_RES = 256


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
        check_int("points_per_batch", points_per_batch, 1)
        check_int("crop_n_layers", crop_n_layers, 0)
        check_int("crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1)
        check_int("upscale_batch", upscale_batch, 1)
        check_number("min_mask_region_area", min_mask_region_area, 0, math.inf)
        for name, value in (
            ("pred_iou_thresh", pred_iou_thresh),
            ("stability_score_thresh", stability_score_thresh),
            ("box_nms_thresh", box_nms_thresh),
            ("crop_nms_thresh", crop_nms_thresh),
            ("stability_prefilter_margin", stability_prefilter_margin),
        ):
            check_number(name, value, 0.0, 1.0)
        check_number("stability_score_offset", stability_score_offset, 0.0, math.inf)
        check_number("crop_overlap_ratio", crop_overlap_ratio, 0.0, 1.0)
        if crop_overlap_ratio == 1.0:
            raise ValueError("crop_overlap_ratio must be below 1")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"unknown output_mode {output_mode!r}; expected one of {', '.join(OUTPUT_MODES)}")
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if points_per_side is not None:
            check_int("points_per_side", points_per_side, 1)
            self.point_grids: list[np.ndarray] = []
            for layer in range(crop_n_layers + 1):
                n = int(points_per_side / crop_n_points_downscale_factor**layer)
                if n < 1:
                    raise ValueError(
                        f"crop layer {layer} gets no points: points_per_side {points_per_side} / "
                        f"crop_n_points_downscale_factor {crop_n_points_downscale_factor}^{layer} < 1"
                    )
                self.point_grids.append(build_point_grid(n))
        elif point_grids is not None:
            self.point_grids = [check_grid(i, g) for i, g in enumerate(point_grids)]
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
        check_image(image)
        size = (image.shape[0], image.shape[1])
        crop_boxes, layers = generate_crop_boxes(size, self.crop_n_layers, self.crop_overlap_ratio)
        masks = MaskSet.concat(
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
            masks = clean_regions(masks, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh))
        return [record(masks, i, self.output_mode) for i in range(len(masks))]

    # -- one crop --------------------------------------------------------------------------------

    def _process_crop(
        self, image: np.ndarray, crop_box: list[int], layer: int, embedding: np.ndarray | torch.Tensor | None
    ) -> MaskSet:
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
        masks = MaskSet.concat(parts)
        if len(masks):
            keep = batched_nms(masks.boxes.float(), masks.iou, torch.zeros(len(masks)), self.box_nms_thresh)
            masks = masks.take(keep)
        masks.boxes = masks.boxes + torch.tensor([x0, y0, x0, y0])
        masks.points = masks.points + torch.tensor([x0, y0], dtype=torch.float64)
        masks.crop_boxes = torch.tensor([crop_box], dtype=torch.int64).expand(len(masks), 4)
        return masks

    def _process_batch(
        self, model_points: torch.Tensor, points: torch.Tensor, crop_box: list[int], image_size: tuple[int, int]
    ) -> MaskSet:
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
            inside = ~near_crop_edge(boxes, crop_box, image_size)
            binary, boxes = binary[inside], boxes[inside]
            full = F.pad(binary, (x0, image_w - crop_w - x0, y0, image_h - crop_h - y0))  # original frame
            selected = torch.nonzero(good).flatten()[inside]
            parts.append(
                MaskSet(
                    masks_to_rle(full),
                    boxes,
                    iou[chunk][selected].float(),
                    stability[selected],
                    points[point_index[chunk][selected]],
                    torch.zeros(len(boxes), 4, dtype=torch.int64),
                )
            )
        return MaskSet.concat(parts)

    def _decode(self, model_points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bx2 prompts (model frame) → masks above pred_iou_thresh: (low-res logits Kx256x256,
        predicted IoU K, prompt index K), prompt-major then whole/part/subpart.

        The folded decoder's transformer and IoU head run for all prompts; its output upscaling and
        mask products (the costly part) only for prompts with a mask that passes (the IoU head does
        not depend on them: exact). `Predictor.decode` computes the same masks for every prompt (a
        test checks the two agree).
        """
        decoder, side = self.predictor.decoder, self.predictor.image_side
        assert side is not None, "the crop's image is set before its prompts are decoded"
        batch = model_points.shape[0]
        coords = torch.cat([model_points[:, None, :], torch.zeros(batch, 1, 2)], dim=1)
        labels = torch.tensor([[1, -1]]).expand(batch, 2)
        device = self.predictor.device
        tokens = decoder.prompt_tokens(coords.to(device), labels.to(device))
        transformed = decoder.transform(side, tokens, decoder.mask_prompt(None))
        iou = decoder.iou(transformed)[:, 1:]  # Bx3: the multimask tokens 1–3
        passing = iou > self.pred_iou_thresh if self.pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
        prompts = torch.nonzero(passing.any(dim=1)).flatten()
        if len(prompts) == 0:
            return torch.zeros(0, LOW_RES, LOW_RES), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        low_res = decoder.masks(side, transformed, range(1, 4), prompts)
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
