"""What the exported decoder graphs take and give: names, shapes and the prompt layout (no torch).

* **Our contract**, one graph (`writer.export_decoder_onnx`), what the browser annotator runs in
  onnxruntime-web:

  ======================  =========================  ===========================================
  input                   shape / dtype              meaning
  ======================  =========================  ===========================================
  ``image_embeddings``    [1, 256, 64, 64] float32   the encoder's output for the image
  ``point_coords``        [1, N, 2] float32          (x, y) in the 1024 model frame, N dynamic
  ``point_labels``        [1, N] float32             1 fg, 0 bg, 2/3 box corners, -1 padding
  ``mask_input``          [1, 1, 256, 256] float32   previous low-res logits (zeros if none)
  ``has_mask_input``      [1] float32                1.0 when ``mask_input`` is used, else 0.0
  ======================  =========================  ===========================================

  Outputs ``low_res_masks`` [1, 4, 256, 256] float32 (logits of all four mask tokens: token 0 is
  the single-mask output, tokens 1-3 the multimask outputs; the caller chooses) and
  ``iou_predictions`` [1, 4] float32. Without a box the caller appends one padding point (0, 0)
  with label -1 (`onnx_prompt` does exactly that). Nothing at full resolution happens in the
  graph: the browser upsamples only the mask it shows, which is the point of this contract.

* **The same contract split in two** (`writer.export_split_decoder`): a per-image graph
  ``<prefix>.image.onnx`` run once when the embedding arrives, ``image_embeddings`` ->
  ``IMAGE_OUTPUTS`` (``image_tokens`` [1,4096,256], ``l0_keys``, ``l0_values``,
  ``l0_image_queries`` [1,4096,128] each, ``upscale_base`` [1,4096,256]: the decoder's image side,
  `decoding.ImageSide`), and a per-click graph ``<prefix>.click.onnx`` taking those five plus the
  prompt inputs above and giving the same two outputs, so the browser worker
  (frontend/src/inference/decoder.worker.ts) treats both forms alike.

* **The official demo's contract** (`writer.export_official_contract_onnx`), kept only so
  benchmarks can compare against it: the same inputs plus ``orig_im_size`` [2] float32 (h, w);
  outputs ``masks`` [1, 1, h, w] (logits upscaled inside the graph), ``iou_predictions`` [1, 1]
  and ``low_res_masks`` [1, 1, 256, 256], with the demo's single-mask selection (token 0 when the
  prompt has more than one point besides the padding, otherwise the best of tokens 1-3).

All graphs are opset 17 with ONNX IR version <= 13: onnxruntime-web 1.30 refuses IR version 14,
which onnx >= 1.23 writes by default.
"""

from __future__ import annotations

import numpy as np

OPSET = 17
MAX_IR_VERSION = 13
MODEL_SIZE = 1024  # side of the square model frame that point coordinates live in
LOW_RES = 256  # side of the low-resolution mask logits
NUM_MASK_TOKENS = 4
PROMPT_INPUTS = ["point_coords", "point_labels", "mask_input", "has_mask_input"]
INPUT_NAMES = ["image_embeddings", *PROMPT_INPUTS]
OUTPUT_NAMES = ["low_res_masks", "iou_predictions"]
OFFICIAL_OUTPUT_NAMES = ["masks", "iou_predictions", "low_res_masks"]
IMAGE_OUTPUTS = ["image_tokens", "l0_keys", "l0_values", "l0_image_queries", "upscale_base"]
CLICK_INPUTS = [*IMAGE_OUTPUTS, *PROMPT_INPUTS]
CLICK_OUTPUTS = OUTPUT_NAMES
POINT_AXES = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}


def onnx_prompt(
    coords_1024: np.ndarray,
    labels: np.ndarray,
    box_1024: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Build the graph's point inputs from clicks and an optional box, as the browser does.

    Args:
        coords_1024: Nx2 float (x, y) clicks in the 1024 model frame (N may be 0).
        labels: N ints, 1 foreground, 0 background.
        box_1024: 4 floats XYXY in the 1024 model frame, or None.

    Returns:
        ``point_coords`` 1xMx2 float32 and ``point_labels`` 1xM float32: the clicks followed by the
        box corners (labels 2, 3), or by one padding point (0, 0) with label -1 when there is no box.
    """
    coords = np.asarray(coords_1024, dtype=np.float32).reshape(-1, 2)
    labs = np.asarray(labels, dtype=np.float32).reshape(-1)
    if len(coords) != len(labs):
        raise ValueError(f"{len(coords)} points but {len(labs)} labels")
    if box_1024 is not None:
        corners = np.asarray(box_1024, dtype=np.float32).reshape(2, 2)
        coords = np.concatenate([coords, corners])
        labs = np.concatenate([labs, np.array([2, 3], dtype=np.float32)])
    else:
        coords = np.concatenate([coords, np.zeros((1, 2), dtype=np.float32)])
        labs = np.concatenate([labs, np.array([-1], dtype=np.float32)])
    return coords[None], labs[None]
