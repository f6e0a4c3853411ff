"""Set an image once, prompt it many times: the interactive and batched front of SAM.

`Predictor` holds one image embedding (computed by `set_image`, or a cached one given to
`set_embedding`) and its decoder image side, and decodes prompts against it with the folded decoder
(model_server/decoding/). Prompts in the original image frame go through `predict` (one prompt, the
official SamPredictor's contract) or `predict_batch` (many prompts in one decoder call); `decode` is
the raw batched path in the 1024 model frame.

It holds per-image state: use one instance per thread. It reads the model's decoder weights when
built (the folded decoder prepares them once): build a new one after training the model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from .decoding import FoldedDecoder, ImageSide
from .sam import Sam
from .transforms import (
    MODEL_SIZE,
    apply_boxes,
    apply_coords,
    postprocess_masks,
    preprocess_shape,
    resize_longest_side,
)

EMBEDDING_SHAPE = (256, 64, 64)
LOW_RES = 256
POINT_LABELS = (-1, 0, 1)


class _Image(NamedTuple):
    embedding: torch.Tensor  # 1x256x64x64
    folded: ImageSide  # its image side for the folded decoder


class Predictor:
    def __init__(self, model: Sam) -> None:
        self.model = model.eval()
        self.device = model.device
        self.decoder = FoldedDecoder(model)
        self.embedding: torch.Tensor | None = None
        self.image_side: ImageSide | None = None
        self._original_size: tuple[int, int] | None = None
        self._input_size: tuple[int, int] | None = None

    # -- the image -------------------------------------------------------------------------------

    def set_image(self, image: np.ndarray) -> None:
        """Encode an HxWx3 uint8 RGB image (original frame) and keep its 1x256x64x64 embedding."""
        if not isinstance(image, np.ndarray):
            raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be HxWx3 RGB, got shape {image.shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image is empty (shape {image.shape})")
        if image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (0–255), got {image.dtype}")
        resized = resize_longest_side(image, self.model.image_encoder.img_size)
        pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).unsqueeze(0)
        with torch.no_grad():
            self._set(self.model.embed_images(pixels))
        self._original_size = (image.shape[0], image.shape[1])
        self._input_size = (resized.shape[0], resized.shape[1])

    def set_embedding(self, embedding: np.ndarray | torch.Tensor, original_size: tuple[int, int]) -> None:
        """Use a precomputed embedding (1x256x64x64 or 256x64x64, any float dtype) of an image whose
        original (height, width) is `original_size`; no encoder runs."""
        if not isinstance(embedding, torch.Tensor):
            embedding = torch.as_tensor(np.asarray(embedding))
        if not embedding.is_floating_point():
            raise ValueError(f"embedding must be floating point, got {embedding.dtype}")
        if (
            tuple(embedding.shape[-3:]) != EMBEDDING_SHAPE
            or embedding.ndim not in (3, 4)
            or (embedding.ndim == 4 and embedding.shape[0] != 1)
        ):
            raise ValueError(f"embedding must be 1x256x64x64 or 256x64x64, got {tuple(embedding.shape)}")
        if len(original_size) != 2 or not all(int(s) == s and s > 0 for s in original_size):
            raise ValueError(f"original_size must be two positive integers (height, width), got {original_size}")
        height, width = int(original_size[0]), int(original_size[1])
        with torch.no_grad():
            self._set(embedding.reshape(1, *EMBEDDING_SHAPE).to(self.device, self.model.dtype))
        self._original_size = (height, width)
        self._input_size = preprocess_shape(height, width, self.model.image_encoder.img_size)

    def _set(self, embedding: torch.Tensor) -> None:
        self.embedding = embedding
        self.image_side = self.decoder.image_side(embedding)

    @property
    def original_size(self) -> tuple[int, int]:
        """(height, width) of the current image."""
        if self._original_size is None:
            raise ValueError("no image set: call set_image() or set_embedding() first")
        return self._original_size

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the current image resized into the model frame (before padding)."""
        if self._input_size is None:
            raise ValueError("no image set: call set_image() or set_embedding() first")
        return self._input_size

    # -- decoding --------------------------------------------------------------------------------

    def decode(
        self,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode B prompts against the current embedding in one call.

        coords BxNx2 (x, y) in the 1024 model frame; labels BxN in {−1, 0, 1, 2, 3} (padding point
        and box corners are the caller's job); mask_input Bx1x256x256 logits or None →
        (low-res logits BxCx256x256, IoU predictions BxC), model dtype, C = 3 if multimask_output else 1.
        The image side is broadcast over the prompts, never copied per prompt.

        With gradients enabled (a caller that trains) it runs the trainable reference modules
        (`sam.MaskDecoder`), since the folded decoder's prepared weights are constants; otherwise
        (`torch.no_grad` / `torch.inference_mode`, as every inference caller) the folded decoder.
        """
        image = self._require_embedding()
        if coords.ndim != 3 or coords.shape[-1] != 2 or tuple(labels.shape) != tuple(coords.shape[:2]):
            raise ValueError(
                f"coords must be BxNx2 and labels BxN, got {tuple(coords.shape)} and {tuple(labels.shape)}"
            )
        if mask_input is not None and tuple(mask_input.shape) != (coords.shape[0], 1, LOW_RES, LOW_RES):
            raise ValueError(f"mask_input must be {coords.shape[0]}x1x256x256, got {tuple(mask_input.shape)}")
        # Coordinates stay float32: the positional encoding is computed at full precision.
        coords, labels = coords.to(self.device, torch.float32), labels.to(self.device)
        mask_input = None if mask_input is None else mask_input.to(self.device, self.model.dtype)
        if torch.is_grad_enabled():
            encoder = self.model.prompt_encoder
            sparse, dense = encoder(coords, labels, mask_input)
            return self.model.mask_decoder(image.embedding, encoder.get_dense_pe(), sparse, dense, multimask_output)
        tokens = range(1, 4) if multimask_output else range(0, 1)
        return self.decoder.decode(image.folded, coords, labels, self.decoder.mask_prompt(mask_input), tokens)

    def upscale(self, low_res: torch.Tensor) -> torch.Tensor:
        """BxCx256x256 low-res logits → BxCxHxW logits in the original frame (float32)."""
        self._require_embedding()
        model_size = self.model.image_encoder.img_size
        return postprocess_masks(low_res.float(), self.input_size, self.original_size, model_size)

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt, in the original frame.

        point_coords Nx2 (x, y) pixels, point_labels N (1 foreground, 0 background, −1 ignored),
        box 4 (or 1x4) XYXY pixels, mask_input 1x256x256 low-res logits (a previous prediction) →
        (masks CxHxW bool, or float32 logits if return_logits; IoU predictions C float32;
        low-res logits Cx256x256 float32), C = 3 if multimask_output else 1.
        """
        self._require_embedding()
        coords = None if point_coords is None else _array(point_coords, "point_coords", (None, 2))[None]
        labels = None if point_labels is None else _array(point_labels, "point_labels", (None,))[None]
        boxes = None if box is None else _array(box, "box", (4,), (1, 4)).reshape(1, 4)
        masks = None if mask_input is None else _array(mask_input, "mask_input", (1, LOW_RES, LOW_RES))[None]
        # No prompt at all is allowed here, as in the official predictor: the decoder sees only its tokens.
        result = self._predict(coords, labels, boxes, masks, multimask_output, return_logits, empty_batch=1)
        return tuple(r[0] for r in result)

    def predict_batch(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for B prompts in one decoder call; the same result as calling `predict` per prompt.

        point_coords BxNx2 (x, y) pixels, point_labels BxN, boxes Bx4 XYXY pixels, mask_input
        Bx1x256x256 logits, all in the original frame and all optional (at least one given) →
        (masks BxCxHxW bool or float32 logits, IoU BxC float32, low-res logits BxCx256x256 float32).
        Full-resolution masks cost B·C·H·W floats: decode large batches in chunks.
        """
        return self._predict(point_coords, point_labels, boxes, mask_input, multimask_output, return_logits, None)

    def _predict(
        self,
        point_coords: Any,
        point_labels: Any,
        boxes: Any,
        mask_input: Any,
        multimask_output: bool,
        return_logits: bool,
        empty_batch: int | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._require_embedding()
        coords, labels, box_corners, masks, batch = self._validate(
            point_coords, point_labels, boxes, mask_input, empty_batch
        )
        parts_c: list[np.ndarray] = []
        parts_l: list[np.ndarray] = []
        if coords is not None and labels is not None:
            parts_c.append(np.asarray(apply_coords(coords, self.original_size, MODEL_SIZE)))
            parts_l.append(labels)
            if box_corners is None:  # the official model expects a padding point after bare points
                parts_c.append(np.zeros((batch, 1, 2)))
                parts_l.append(np.full((batch, 1), -1))
        if box_corners is not None:
            parts_c.append(np.asarray(apply_boxes(box_corners, self.original_size, MODEL_SIZE)).reshape(batch, 2, 2))
            parts_l.append(np.tile(np.array([[2, 3]]), (batch, 1)))
        all_coords = np.concatenate(parts_c, axis=1) if parts_c else np.zeros((batch, 0, 2))
        all_labels = np.concatenate(parts_l, axis=1) if parts_l else np.zeros((batch, 0))
        with torch.inference_mode():
            low_res, iou = self.decode(
                torch.as_tensor(all_coords, dtype=torch.float32),
                torch.as_tensor(all_labels, dtype=torch.int64),
                None if masks is None else torch.as_tensor(masks, dtype=torch.float32),
                multimask_output,
            )
            full = self.upscale(low_res)
            if not return_logits:
                full = full > self.model.mask_threshold
        return full.cpu().numpy(), iou.float().cpu().numpy(), low_res.float().cpu().numpy()

    # -- validation ------------------------------------------------------------------------------

    def _require_embedding(self) -> _Image:
        if self.embedding is None or self.image_side is None:
            raise ValueError("no image set: call set_image() or set_embedding() first")
        return _Image(self.embedding, self.image_side)

    def _validate(
        self, coords: Any, labels: Any, boxes: Any, masks: Any, default_batch: int | None
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None, int]:
        """Checked arrays and the batch size; `default_batch` applies when no prompt is given at all."""
        if (coords is None) != (labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        if coords is not None:
            coords = _array(coords, "point_coords", (None, None, 2))
            labels = _array(labels, "point_labels", (None, None))
            if labels.shape != coords.shape[:2]:
                raise ValueError(f"point_labels shape {labels.shape} does not match point_coords {coords.shape}")
            if not np.isin(labels, POINT_LABELS).all():
                raise ValueError(f"point_labels must be in {POINT_LABELS} (box corners go in `boxes`)")
            self._check_inside(coords, "point_coords")
        if boxes is not None:
            boxes = _array(boxes, "boxes", (None, 4))
            self._check_inside(boxes.reshape(-1, 2, 2), "boxes")
            if (boxes[:, 2:] < boxes[:, :2]).any():
                raise ValueError("boxes must be XYXY with x0 <= x1 and y0 <= y1")
        if masks is not None:
            masks = _array(masks, "mask_input", (None, 1, LOW_RES, LOW_RES))
        sizes = {x.shape[0] for x in (coords, boxes, masks) if x is not None}
        if len(sizes) > 1:
            raise ValueError(f"point_coords, boxes and mask_input disagree on the batch size: {sorted(sizes)}")
        if sizes:
            return coords, labels, boxes, masks, sizes.pop()
        if default_batch is None:
            raise ValueError("give at least one of point_coords, boxes, mask_input")
        return coords, labels, boxes, masks, default_batch

    def _check_inside(self, points: np.ndarray, name: str) -> None:
        """Points ...x2 (x, y) must lie in [0, W] x [0, H] of the original image (edges included)."""
        height, width = self.original_size
        x, y = points[..., 0], points[..., 1]
        if not ((x >= 0) & (x <= width) & (y >= 0) & (y <= height)).all():
            raise ValueError(f"{name} outside the {width}x{height} image (x in [0, {width}], y in [0, {height}])")


def _array(value: Any, name: str, *shapes: tuple[int | None, ...]) -> np.ndarray:
    """`value` as a finite numpy array matching one of `shapes` (None = any size)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    if not any(
        array.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, array.shape)) for shape in shapes
    ):
        wanted = " or ".join("x".join("N" if s is None else str(s) for s in shape) for shape in shapes)
        raise ValueError(f"{name} must have shape {wanted}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array
