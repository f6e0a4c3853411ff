"""An image encoder loaded once and run on batches: what the service and in-process callers share.

`EmbeddingModel(architecture, checkpoint).embed(images)` resizes each image (longest side to 1024,
as the predictor does), stacks the padded inputs and runs ONE encoder forward for the batch. On a
GPU the encoder runs in float16 (its output is stored in float16 anyway); on the CPU in float32.
The backend's embedded mode calls it in process; production calls it through `server.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model_server import api
from model_server.sam import Sam
from model_server.sam.build import build_sam
from model_server.service.weights import encoder_sha256, file_sha256
from model_server.transforms import resize_longest_side


def pick_device(device: str | None) -> torch.device:
    """The requested device, or CUDA when available, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class EmbeddingModel:
    """SAM's image encoder on one device, thread-safe, for batches of RGB images.

    Args:
        architecture: ``vit_t``, ``vit_b``, ``vit_l`` or ``vit_h``.
        checkpoint: weights file (official or ours), loaded strictly; None gives seeded random
            weights (an ``untrained`` model: same seed, same weights, in every process).
        device: ``cuda``/``cpu``/...; None picks CUDA when available.
        half: run the encoder in float16; default: on CUDA only.
        seed: seed of the random weights when ``checkpoint`` is None.
    """

    def __init__(
        self,
        architecture: str,
        checkpoint: str | Path | None = None,
        device: str | None = None,
        half: bool | None = None,
        seed: int = 0,
    ) -> None:
        if architecture not in api.ARCHITECTURES + api.TEST_ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; expected one of {api.ARCHITECTURES}")
        self.architecture = architecture
        self.device = pick_device(device)
        self.checkpoint = str(checkpoint) if checkpoint is not None else None
        self.checkpoint_sha256 = file_sha256(checkpoint) if checkpoint is not None else None
        sam = build_sam(architecture, checkpoint=self.checkpoint, device=self.device, seed=seed)
        self.encoder_sha256 = encoder_sha256(sam.image_encoder)  # before any cast: the same on every device
        use_half = self.device.type == "cuda" if half is None else half
        if use_half:
            sam.image_encoder.half()  # pixel statistics stay float32: normalisation is exact
        self.sam = sam
        self._lock = threading.Lock()

    @property
    def dtype_name(self) -> str:
        return str(self.sam.dtype).removeprefix("torch.")

    def embed(self, images: Sequence[np.ndarray]) -> list[api.EmbeddingResult]:
        """Embed HxWx3 uint8 RGB images (any sizes) in one forward.

        Returns one `api.EmbeddingResult` per image, in order: a 1x256x64x64 float16 embedding,
        the image's (h, w) and its resized (h, w) inside the 1024 frame.

        Raises:
            ValueError: an image is not a non-empty HxWx3 uint8 array.
        """
        if len(images) == 0:
            return []
        checked = [api.validate_rgb(image) for image in images]
        with self._lock:
            return encode_images(self.sam, checked)


@torch.inference_mode()
def encode_images(sam: Sam, images: Sequence[np.ndarray]) -> list[api.EmbeddingResult]:
    """One encoder forward over HxWx3 uint8 RGB images (checked by the caller), any sizes.

    Each image is resized (longest side 1024) and padded like the predictor does, then all go
    through `sam.image_encoder` together, in the encoder's dtype.

    Returns one `api.EmbeddingResult` per image, in order (1x256x64x64 float16, sizes).
    """
    resized = [resize_longest_side(image) for image in images]
    inputs = [torch.from_numpy(np.array(r)).permute(2, 0, 1) for r in resized]  # PIL arrays are read-only
    batch = torch.stack([sam.preprocess(x[None].to(sam.device))[0] for x in inputs])
    embeddings = sam.image_encoder(batch.to(sam.dtype)).to(torch.float16).cpu().numpy()
    return [
        api.EmbeddingResult(
            embedding=embeddings[i : i + 1],
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(int(r.shape[0]), int(r.shape[1])),
        )
        for i, (image, r) in enumerate(zip(images, resized))
    ]
