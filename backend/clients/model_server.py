"""The one place the product reaches the model.

Two modes, chosen by `Settings.model_server_url`:

* **embedded** (None, the default): the model runs in this process. `model_server` is imported
  lazily, inside the calls, so importing the backend (API, CLI) never loads torch; a worker that
  embeds loads each model version once and keeps the last one.
* **HTTP** (``http://model-server:8001``): images go to `model_server/service/server.py`, which batches
  concurrent embedding requests on its GPU and runs the automatic generator. The client sends a
  project's images concurrently so they share batches, and checks first that the server holds the
  very checkpoint (sha256) of the version asked for: an embedding computed by another model would
  silently break every click on that image.

Decoder exports, untrained weights and checkpoint checks are file operations on the CPU and always
run in process (through `model_server.service.weights`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from model_server import api

if TYPE_CHECKING:
    from backend.core.config import Settings

EmbeddingResult = api.EmbeddingResult


@dataclass(frozen=True)
class TrainingArrays:
    """One (image embedding, object mask) pair for training or evaluation, as numpy arrays.

    Attributes:
        embedding: 256x64x64 float16/float32, the image encoder's output for the image.
        original_size: (h, w) of the image in pixels.
        input_size: (h, w) of the image resized to the 1024 frame (longest side 1024).
        mask: HxW bool object mask in the original image frame (H, W = original_size), not empty.
    """

    embedding: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    mask: np.ndarray


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run produced: `sha256` of the checkpoint written, unless it stopped early."""

    steps_done: int
    losses: list[float]
    stopped_early: bool
    sha256: str | None


class ModelServerError(RuntimeError):
    """The model server is unreachable, refused the request, or serves another model."""


@dataclass(frozen=True)
class ModelSpec:
    """Which weights to run: a model version as the model side needs it.

    Attributes:
        architecture: ``vit_t`` | ``vit_b`` | ``vit_l`` | ``vit_h``.
        checkpoint: local path of the weights file.
        sha256: the file's hex sha256 (what a remote server must report).
    """

    architecture: str
    checkpoint: Path
    sha256: str | None


class _InProcessModels:
    """Keeps the last loaded `EmbeddingModel` (one model in memory per process is plenty)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, str, str | None] | None = None
        # The model side's EmbeddingModel, loaded on first use (it imports torch); typed loosely so the
        # product names no model internals at type-check time either.
        self._model: Any = None

    def get(self, spec: ModelSpec) -> Any:
        key = (spec.architecture, str(spec.checkpoint), spec.sha256)
        with self._lock:
            if self._key != key:
                from model_server.service.embedding_model import EmbeddingModel

                self._model = None  # free the old one before loading the next
                self._model = EmbeddingModel(spec.architecture, spec.checkpoint)
                self._key = key
            assert self._model is not None  # set whenever _key is
            return self._model


_IN_PROCESS = _InProcessModels()


class ModelServerClient:
    """Embeds images and prepares model artifacts, in process or over HTTP.

    Args:
        url: base URL of a running model server, or None for the embedded mode.
        timeout: seconds per HTTP request (a batch on a busy GPU can take a while).
        concurrency: images in flight at once over HTTP (so the server can batch them).
    """

    def __init__(self, url: str | None = None, timeout: float = 300.0, concurrency: int = 8) -> None:
        self.url = url.rstrip("/") if url else None
        self.timeout = timeout
        self.concurrency = concurrency
        self._verified: set[tuple[str, str | None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelServerClient:
        return cls(settings.model_server_url)

    @property
    def embedded(self) -> bool:
        return self.url is None

    def _http(self) -> httpx.Client:
        """A client of the model service; only called in the HTTP mode (`url` set)."""
        assert self.url is not None
        return httpx.Client(base_url=self.url, timeout=self.timeout)

    def embed(self, images_rgb: Sequence[np.ndarray], spec: ModelSpec) -> list[EmbeddingResult]:
        """Embed HxWx3 uint8 RGB images with the model `spec` names.

        Returns one `EmbeddingResult` per image (1x256x64x64 float16, original (h, w), resized
        (h, w) in the 1024 frame), in order.

        Raises:
            ValueError: an image is not HxWx3 uint8 or is empty.
            ModelServerError: the server is unreachable, failed, or serves another checkpoint.
        """
        images = [api.validate_rgb(image) for image in images_rgb]
        if not images:
            return []
        if self.embedded:
            return _IN_PROCESS.get(spec).embed(images)
        with self._http() as http:
            self._check_serves(http, spec)
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(images))) as pool:
                return list(pool.map(lambda image: self._embed_one(http, image), images))

    def automatic_masks(self, image_rgb: np.ndarray, spec: ModelSpec, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every mask the automatic generator finds in one HxWx3 uint8 RGB image (image pixel frame).

        `params` are the generator's keyword arguments (points_per_side, pred_iou_thresh, ...). Returns
        its records with COCO RLE segmentations (``output_mode="coco_rle"``): segmentation, area, bbox
        XYWH, predicted_iou, stability_score, point_coords, crop_box XYWH.

        Raises:
            ValueError: the image is not HxWx3 uint8, or a parameter is out of range.
            ModelServerError: the server is unreachable, failed, or serves another checkpoint.
        """
        image = api.validate_rgb(image_rgb)
        if not self.embedded:
            with self._http() as http:
                self._check_serves(http, spec)
                body, headers = api.encode_image_request(image)
                response = self._post(
                    http, "/v1/automatic-masks", body, {**headers, **api.encode_generator_params(params)}
                )
            return response.json()["records"]
        from model_server.amg import AutomaticMaskGenerator

        generator = AutomaticMaskGenerator(_IN_PROCESS.get(spec).sam, output_mode="coco_rle", **params)
        return generator.generate(image)

    def health(self) -> api.HealthOut:
        """The remote server's health (HTTP mode only)."""
        if self.embedded:
            raise ModelServerError("no model server URL configured: the model runs in process")
        with self._http() as http:
            return self._health(http)

    def _health(self, http: httpx.Client) -> api.HealthOut:
        try:
            response = http.get("/v1/health")
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise ModelServerError(f"model server at {self.url} is not healthy: {error}") from error
        return api.HealthOut.model_validate(response.json())

    def _check_serves(self, http: httpx.Client, spec: ModelSpec) -> None:
        key = (spec.architecture, spec.sha256)
        if key in self._verified:
            return
        health = self._health(http)
        if health.architecture != spec.architecture or health.checkpoint_sha256 != spec.sha256:
            raise ModelServerError(
                f"model server at {self.url} serves {health.architecture} "
                f"(checkpoint sha256 {health.checkpoint_sha256}), but {spec.architecture} "
                f"(sha256 {spec.sha256}) was asked for: start it with that checkpoint"
            )
        self._verified.add(key)

    def _embed_one(self, http: httpx.Client, image: np.ndarray) -> EmbeddingResult:
        body, headers = api.encode_image_request(image)
        response = self._post(http, "/v1/embed", body, headers)
        return api.decode_embedding_response(response.content, response.headers)

    def _post(self, http: httpx.Client, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """A 200 response, or ValueError for a 422 (the server refused a parameter: the caller's
        mistake, named in its detail) and ModelServerError for anything else."""
        try:
            response = http.post(path, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise ModelServerError(f"model server at {self.url} unreachable: {error}") from error
        if response.status_code == 422:
            raise ValueError(response.json().get("detail", response.text[:300]))
        if response.status_code != 200:
            raise ModelServerError(f"model server at {self.url} answered {response.status_code}: {response.text[:300]}")
        return response

    # Model artifacts: file work on the CPU, always in process.

    def save_untrained_checkpoint(self, architecture: str, path: Path) -> str:
        """Write seeded random weights of `architecture` to `path`; return their sha256."""
        from model_server.service.weights import save_untrained_checkpoint

        return save_untrained_checkpoint(architecture, path)

    def verify_checkpoint(self, architecture: str, path: Path) -> str:
        """Strict load of `path` as `architecture` (ValueError naming the problem); return sha256."""
        from model_server.service.weights import verify_checkpoint

        return verify_checkpoint(architecture, path)

    def export_decoders(self, spec: ModelSpec, folder: Path) -> dict[str, Path]:
        """Write every browser decoder graph of `spec` into `folder`: the one graph and the split pair.

        Returns ``{"decoder": ..., "decoder_image": ..., "decoder_click": ...}`` file paths (see
        `model_server.service.weights.export_browser_decoders`).
        """
        from model_server.service.weights import export_browser_decoders

        return export_browser_decoders(spec.architecture, spec.checkpoint, folder)

    # Training and evaluation run in this process (the `train` worker), on cached embeddings:
    # only the prompt encoder and mask decoder learn, so a CPU worker is enough.

    def retrain(
        self,
        spec: ModelSpec,
        samples: Sequence[TrainingArrays],
        config: dict[str, Any],
        out_checkpoint: Path,
        *,
        checkpoint_dir: Path | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainOutcome:
        """Train `spec`'s prompt encoder + mask decoder on `samples`; write the full model to `out_checkpoint`.

        `config` holds `model_server.training.TrainConfig` fields (steps, lr, batch_size, ...).
        `checkpoint_dir` keeps the run's resumable state (a rerun after a crash continues from it).
        `progress(step, total, loss)` is called as training goes; when `should_stop()` turns true the
        run ends early and nothing is written (``sha256`` None).

        Raises:
            ValueError: no samples, a malformed sample, or a bad config field.
        """
        from model_server.sam.build import build_sam
        from model_server.samples import MaskSample
        from model_server.service.weights import save_model_checkpoint
        from model_server.training import TrainConfig, train_decoder

        if not samples:
            raise ValueError("no training samples")
        model = build_sam(spec.architecture, checkpoint=spec.checkpoint)
        result = train_decoder(
            model,
            [_training_sample(MaskSample, s) for s in samples],
            TrainConfig(**config),
            checkpoint_dir=checkpoint_dir,
            progress=progress or (lambda step, total, loss: None),
            should_stop=should_stop or (lambda: False),
        )
        sha = None if result.stopped_early else save_model_checkpoint(model, out_checkpoint)
        return TrainOutcome(int(result.steps_done), [float(v) for v in result.losses], bool(result.stopped_early), sha)

    def evaluate(
        self,
        spec: ModelSpec,
        samples: Sequence[TrainingArrays],
        max_clicks: int = 20,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, float]:
        """Interactive-segmentation metrics of `spec` on `samples` (simulated clicks from the masks):
        miou_1pt, miou_at_1/3/5, noc85, noc90, n_samples (`model_server.evaluation.evaluate`);
        `progress(done, total)` after each mask."""
        from model_server.evaluation import evaluate
        from model_server.sam.build import build_sam
        from model_server.samples import MaskSample

        if not samples:
            raise ValueError("no evaluation samples")
        model = build_sam(spec.architecture, checkpoint=spec.checkpoint)
        metrics = evaluate(
            model, [_training_sample(MaskSample, s) for s in samples], max_clicks=max_clicks, progress=progress
        )
        return {key: float(value) for key, value in metrics.items()}

    # The box detector of the semi-automatic stage: a small head over cached embeddings, trained
    # and run in this process (the `train` / `auto` worker); the SAM decoder for its box prompts too.

    def train_detector(
        self,
        samples: Sequence[tuple[np.ndarray, tuple[int, int], tuple[int, int], Any]],
        config: dict[str, Any],
        out_path: Path,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> dict[str, Any]:
        """Train a detector on (embedding 256x64x64, original (h, w), input (h, w), boxes Kx4 XYXY
        original frame) samples, write it to `out_path`; return its training metrics.

        Raises:
            ValueError: no boxes, fewer than ``config["min_boxes"]``, or a malformed sample.
        """
        from model_server.detector import train_detector

        detector, metrics = train_detector(samples, config, progress=progress)
        detector.save(out_path)
        return metrics

    def evaluate_detector(
        self,
        path: Path,
        samples: Sequence[tuple[np.ndarray, tuple[int, int], tuple[int, int], Any]],
        score_thresh: float = 0.5,
    ) -> dict[str, float]:
        """Box recall/precision at IoU 0.5 (at `score_thresh`) and AP50 of the detector file `path`."""
        from model_server.detector import Detector, evaluate_detector

        return evaluate_detector(Detector.load(path), samples, score_thresh=score_thresh)

    def propose_masks(
        self,
        spec: ModelSpec,
        detector_path: Path,
        embedding: np.ndarray,
        original_size: tuple[int, int],
        input_size: tuple[int, int],
        *,
        score_thresh: float,
        pred_iou_thresh: float,
        nms_thresh: float,
        max_boxes: int = 50,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Detector boxes → SAM masks (box prompts, batched) on one image's cached embedding
        (256x64x64, of the model `spec`): (boxes above `score_thresh`, records of the kept masks:
        COCO RLE ``segmentation`` in the original frame, ``area``, ``box`` XYXY, ``score``,
        ``predicted_iou``). See `model_server.detector.proposals.propose_masks`."""
        from model_server.detector import Detector
        from model_server.detector.proposals import propose_masks
        from model_server.predictor import Predictor

        predictor = Predictor(_IN_PROCESS.get(spec).sam)
        return propose_masks(
            predictor,
            Detector.load(detector_path),
            embedding,
            original_size,
            input_size,
            score_thresh=score_thresh,
            pred_iou_thresh=pred_iou_thresh,
            nms_thresh=nms_thresh,
            max_boxes=max_boxes,
        )


def _training_sample(cls: Any, sample: TrainingArrays) -> Any:
    return cls(
        embedding=sample.embedding,
        original_size=tuple(sample.original_size),
        input_size=tuple(sample.input_size),
        mask=sample.mask,
    )
