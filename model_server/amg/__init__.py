"""Fully automatic mask generation (the data engine's third stage): a grid of point prompts → masks.

The algorithm and every parameter are the official generator's (SAM paper §4 / App. A; see
`AutomaticMaskGenerator`): each grid point yields three masks (whole, part, subpart); masks are kept
when their predicted IoU exceeds `pred_iou_thresh` and their stability score (IoU of the mask
thresholded at ±`stability_score_offset`) reaches `stability_score_thresh`; masks whose box touches
a crop edge (not an image edge) are dropped; box NMS removes duplicates within a crop; overlapping
zoomed-in crops add small objects, and NMS across crops prefers the smaller crop; small holes and
islands can be removed, followed by another NMS.

Why it is faster than the official generator on the same weights, with the same decisions:
- prompts are decoded in batches with the folded decoder (model_server/decoding/): the image side
  is computed once per crop and broadcast (no per-prompt copy), every attention between the 7
  prompt tokens and the 4096 image rows folds its 4096-row projections into the tokens' side, and
  the output upscaling runs channels last as plain matrix products, a few whole prompts per call;
- the decoder's transformer and IoU head run for every prompt, but its costly output upscaling and
  mask products only for prompts with at least one mask above `pred_iou_thresh` (the IoU head does
  not depend on them: exact);
- the stability score is first estimated on the 256×256 logits; only masks within
  `stability_prefilter_margin` of the threshold or above it are upscaled to full resolution, where
  the exact score decides (as in the official code), as do boxes and the crop-edge test;
- boxes come from row/column projections, NMS is batched and vectorised, masks become RLE right
  after the full-resolution decisions, and no per-batch deep copies are made.

Modules: `generator` (the crop and batch loop), `crops` (point grid, crop boxes, crop-edge test),
`masks` (the kept set, hole/island clean-up, output records), `checks` (argument checks).
"""

from .crops import build_point_grid, generate_crop_boxes
from .generator import AutomaticMaskGenerator
from .masks import OUTPUT_MODES

__all__ = ["OUTPUT_MODES", "AutomaticMaskGenerator", "build_point_grid", "generate_crop_boxes"]
