"""The model side's public contract, free of torch: the `ModelService` protocol and its value types.

The backend imports only this module (never `model_server.service.*`, which imports torch): it gets a
`ModelService` from `in_process_service(storage)` (the model in its own process) or
`http_service(url)` (the model service, ``python -m model_server serve --storage URL``; its routes
are in `model_server/service/http_schemas.py`), and `Storage`/`open_storage` to open the same
object store as the model side. Everything here needs only numpy and pydantic.

The browser gets an embedding as the bytes of `ModelService.embedding_wire` in one of
`WIRE_ENCODINGS`, described by `embedding_headers` (``X-Embedding-Shape: 1,256,64,64``,
``X-Embedding-Dtype``, ``X-Original-Size: h,w``, ``X-Input-Size: h,w``: the image resized so that
its longest side is 1024, before padding).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

# Re-exported: the storage both sides of the boundary open from their own settings (keys, never paths).
from model_server.storage import Storage as Storage
from model_server.storage import open_storage as open_storage

MODEL_SIZE = 1024  # side of the square frame the encoder sees (longest side resized to it, padded)
EMBEDDING_SHAPE: tuple[int, int, int, int] = (1, 256, 64, 64)
EMBEDDING_DTYPE = "float16"
EMBEDDING_NBYTES = int(np.prod(EMBEDDING_SHAPE)) * 2
ARCHITECTURES = ("vit_t", "vit_b", "vit_l", "vit_h")
# Accepted by the model side besides `ARCHITECTURES`: a tiny encoder that trains on a CPU in seconds,
# for tests only (the backend's import and download commands keep refusing it).
TEST_ARCHITECTURES = ("vit_test",)

HEADER_SHAPE = "X-Embedding-Shape"
HEADER_DTYPE = "X-Embedding-Dtype"
HEADER_ORIGINAL_SIZE = "X-Original-Size"
HEADER_INPUT_SIZE = "X-Input-Size"

# Largest image the service accepts, in pixels (the backend's own upload limit is lower).
MAX_IMAGE_PIXELS = 100_000_000


@dataclass(frozen=True)
class EmbeddingResult:
    """One image's embedding as the encoder computed it.

    Attributes:
        embedding: 1x256x64x64 float16 array (C-order), the image embedding in the padded 64x64
            grid of the 1024 model frame.
        original_size: (h, w) of the image that was embedded.
        input_size: (h, w) of that image resized so its longest side is 1024 (the unpadded region).
    """

    embedding: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]


# The browser's encodings of a stored embedding (`ModelService.embedding_wire`, model_server/service/wire.py).
WIRE_FLOAT16 = "float16"
WIRE_INT8 = "int8-per-channel"
WIRE_ENCODINGS = (WIRE_FLOAT16, WIRE_INT8)


class HealthOut(BaseModel):
    """What ``GET /v1/health`` reports: enough to tell which model answers and how busy it is.

    `architecture` and `checkpoint_sha256` are set when the service is pinned to them
    (``serve --model/--checkpoint``); a service that loads any checkpoint from storage reports None.
    """

    status: str
    architecture: str | None
    device: str
    dtype: str
    checkpoint_sha256: str | None
    queue_depth: int
    max_batch: int
    max_wait_ms: float


def format_size(size: tuple[int, int]) -> str:
    """(h, w) → ``"h,w"``, the header form of a size."""
    return f"{int(size[0])},{int(size[1])}"


def validate_rgb(image: np.ndarray) -> np.ndarray:
    """Check that ``image`` is an HxWx3 uint8 RGB array of a sane size; return it C-contiguous."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an HxWx3 RGB image, got shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {image.dtype}")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("the image is empty")
    if h * w > MAX_IMAGE_PIXELS:
        raise ValueError(f"image of {h}x{w} pixels exceeds the limit of {MAX_IMAGE_PIXELS}")
    return np.ascontiguousarray(image)


def embedding_headers(original_size: tuple[int, int], input_size: tuple[int, int]) -> dict[str, str]:
    """The headers that describe an embedding's bytes (shared with the backend's browser endpoint)."""
    return {
        HEADER_SHAPE: ",".join(str(s) for s in EMBEDDING_SHAPE),
        HEADER_DTYPE: EMBEDDING_DTYPE,
        HEADER_ORIGINAL_SIZE: format_size(original_size),
        HEADER_INPUT_SIZE: format_size(input_size),
    }


def embedding_to_bytes(embedding: np.ndarray) -> bytes:
    """1x256x64x64 (or 256x64x64) float16 array → little-endian C-order bytes."""
    array = np.asarray(embedding)
    if array.size != int(np.prod(EMBEDDING_SHAPE)):
        raise ValueError(f"expected an embedding of shape {EMBEDDING_SHAPE}, got {array.shape}")
    return np.ascontiguousarray(array.reshape(EMBEDDING_SHAPE), dtype="<f2").tobytes()


# ---------------------------------------------------------------------------------------------------
# The model-service protocol: every operation the product needs, over plain value types.
#
# Objects (images, embeddings, checkpoints, detector weights, decoder graphs) are named by their key in
# the shared object storage (`model_server.storage`): both sides open the same store from their own
# settings, so requests carry keys, never file paths or big arrays, and no two processes share a disk.
# Two implementations give the same results: `model_server.service.in_process.InProcessModelService`
# (embedded mode) and `model_server.service.http_client.HttpModelService` (the model service).
# ---------------------------------------------------------------------------------------------------


class ModelServiceError(RuntimeError):
    """The model service is unreachable, failed, or serves other weights than the ones asked for."""


class OperationCancelled(RuntimeError):
    """A long operation stopped because its caller's `should_stop()` turned true."""


@dataclass(frozen=True)
class ModelRef:
    """Which SAM weights to run.

    Attributes:
        architecture: one of `ARCHITECTURES` (or `TEST_ARCHITECTURES`, tests only).
        checkpoint_key: storage key of the weights file.
        sha256: hex sha256 of that file; the model side refuses weights whose digest differs.
    """

    architecture: str
    checkpoint_key: str
    sha256: str


@dataclass(frozen=True)
class ModelInfo:
    """What the model side reports about a checkpoint: its digest and its image encoder's identity.

    `encoder_sha256` is the sha256 of the image encoder's parameters alone: versions that share it
    compute the same embeddings, so they share embedding objects.
    """

    architecture: str
    sha256: str
    encoder_sha256: str


@dataclass(frozen=True)
class EmbeddingInfo:
    """Where one image's embedding is stored (written by the model side only) and its two sizes.

    Attributes:
        key: storage key of the model side's embedding file (keyed by encoder identity and image).
        original_size: (h, w) of the image in pixels.
        input_size: (h, w) of the image resized into the 1024 frame (longest side 1024).
    """

    key: str
    original_size: tuple[int, int]
    input_size: tuple[int, int]


@dataclass(frozen=True)
class DetectorSample:
    """One image for the box detector: its embedding and its objects' boxes (XYXY, image pixels)."""

    embedding: EmbeddingInfo
    boxes: list[list[float]]


@dataclass(frozen=True)
class MaskSample:
    """One object for retraining or evaluation: its image's embedding and its mask as COCO RLE
    (``{"size": [h, w], "counts": str}``, image pixel frame, not empty)."""

    embedding: EmbeddingInfo
    rle: dict[str, Any]


@dataclass(frozen=True)
class ImageMaskSample:
    """One object for a round that trains the image encoder: its stored image (any format PIL opens,
    EXIF orientation applied; the model side resizes it into the 1024 frame) and its mask as COCO RLE
    (image pixel frame, not empty)."""

    image_key: str
    rle: dict[str, Any]


@dataclass(frozen=True)
class TrainOutcome:
    """What a retraining run produced: `info` of the checkpoint written, None if it stopped early
    (when the round trained the image encoder, `info.encoder_sha256` is the new encoder's)."""

    steps_done: int
    losses: list[float]
    stopped_early: bool
    info: ModelInfo | None


@dataclass(frozen=True)
class ProposeParams:
    """Thresholds of the detector's pre-fill (see `model_server.detector.proposals.propose_masks`)."""

    score_thresh: float
    pred_iou_thresh: float
    nms_thresh: float
    max_boxes: int = 50


@dataclass(frozen=True)
class Proposals:
    """Detector boxes above `score_thresh` prompted (`n_boxes`) and the records of the kept masks:
    COCO RLE ``segmentation`` (image frame), ``area``, ``box`` XYXY, ``score``, ``predicted_iou``."""

    n_boxes: int
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ImageScores:
    """What the served model tells about one image for choosing what to annotate next.

    Attributes:
        pooled: the image embedding pooled to one vector (for diversity and near-duplicate search).
        uncertainty: higher = the model is less sure of this image's objects (0..1).
        details: the figures `uncertainty` was computed from, by name.
    """

    pooled: list[float]
    uncertainty: float
    details: dict[str, float] = field(default_factory=dict)


# progress(step, total, loss) for training; progress(done, total) for evaluation.
TrainProgress = Callable[[int, int, float], None]
CountProgress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


class ModelService(Protocol):
    """Every operation the product asks of the model. Bad input raises ValueError naming the problem
    (over HTTP: a 422 turned back into ValueError); anything else on the model side raises
    `ModelServiceError`. Long operations take `progress` and `should_stop` and run on the model side;
    over HTTP they report progress back and are cancelled across the boundary."""

    def create_untrained(self, architecture: str, checkpoint_key: str) -> ModelInfo:
        """Write seeded random weights of `architecture` to `checkpoint_key`."""
        ...

    def describe(self, architecture: str, checkpoint_key: str) -> ModelInfo:
        """Strictly load `checkpoint_key` as `architecture` (ValueError naming the problem)."""
        ...

    def embed(self, model: ModelRef, image_keys: Sequence[str]) -> list[EmbeddingInfo]:
        """Embed the stored images (any format PIL opens; EXIF orientation applied), writing each
        embedding unless its object for this encoder already exists; one `EmbeddingInfo` per key, in order."""
        ...

    def embedding_wire(self, embedding: EmbeddingInfo, encoding: str) -> bytes:
        """The browser's bytes of a stored embedding in `encoding` (``float16`` | ``int8-per-channel``)."""
        ...

    def automatic_masks(self, model: ModelRef, image_key: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The automatic generator's records (``output_mode="coco_rle"``) over one stored image."""
        ...

    def train_detector(
        self,
        model: ModelRef,
        samples: Sequence[DetectorSample],
        config: Mapping[str, Any],
        out_key: str,
        *,
        progress: TrainProgress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> dict[str, Any]:
        """Train a box detector, write it to `out_key`; its training metrics. `OperationCancelled`
        when `should_stop()` turned true (nothing written)."""
        ...

    def evaluate_detector(
        self, detector_key: str, samples: Sequence[DetectorSample], score_thresh: float
    ) -> dict[str, float]:
        """Box recall/precision at IoU 0.5 (at `score_thresh`) and AP50 of the stored detector."""
        ...

    def propose_masks(
        self, model: ModelRef, detector_key: str, embedding: EmbeddingInfo, params: ProposeParams
    ) -> Proposals:
        """Detector boxes → SAM masks (box prompts) on one image's stored embedding."""
        ...

    def retrain(
        self,
        model: ModelRef,
        samples: Sequence[MaskSample] | Sequence[ImageMaskSample],
        config: Mapping[str, Any],
        out_key: str,
        *,
        work_prefix: str | None = None,
        progress: TrainProgress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> TrainOutcome:
        """Train from `model` on `samples` (`model_server.training.TrainConfig` fields in `config`);
        write the whole model to `out_key`. `work_prefix` keeps the run's resumable state in storage
        (a rerun on any model service continues from it). Stopping early writes nothing.

        ``config["encoder_mode"]`` "frozen" (the default) trains the decoder side on cached
        embeddings: `MaskSample`s. Any other mode trains the image encoder too, on the images:
        `ImageMaskSample`s; on a CPU that is refused (ValueError) unless
        ``allow_cpu_encoder_training`` is set (tests, with a tiny encoder). The model service trains
        with as many processes as it was started with (DDP over its GPUs)."""
        ...

    def evaluate(
        self,
        model: ModelRef,
        samples: Sequence[MaskSample],
        *,
        max_clicks: int = 20,
        progress: CountProgress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> dict[str, float]:
        """Interactive metrics with simulated clicks: miou_1pt, miou_at_1/3/5, noc85, noc90, n_samples."""
        ...

    def score_images(self, model: ModelRef, embeddings: Sequence[EmbeddingInfo]) -> list[ImageScores]:
        """Selection scores of each stored embedding under `model`, in order."""
        ...

    def export_decoders(self, model: ModelRef, prefix: str) -> dict[str, str]:
        """Write every browser decoder graph of `model` under `prefix`; ``{"decoder": key,
        "decoder_image": key, "decoder_click": key}``."""
        ...


def in_process_service(
    storage: Storage, cache_dir: str | None = None, train_processes: int | None = None
) -> ModelService:
    """The embedded implementation: the model in this process, on `storage`. Torch is imported here,
    on the first call, so importing this module never loads it. `train_processes`: processes of a
    retraining round (DDP under torchrun when more than one); None = one per CUDA device (1 on CPU)."""
    from model_server.service.in_process import InProcessModelService

    return InProcessModelService(storage, cache_dir, train_processes=train_processes)


def http_service(url: str, *, timeout: float = 300.0, retries: int = 3) -> ModelService:
    """The model service at `url` (``http://host:8001``): the same protocol over HTTP, torch-free.
    `timeout`: seconds per request; `retries`: attempts after a connection error, with backoff."""
    from model_server.service.http_client import HttpModelService

    return HttpModelService(url, timeout=timeout, retries=retries)
