"""`InProcessModelService`: every operation of `api.ModelService`, run in this process on storage keys.

The embedded mode of the backend and the HTTP model service (`server.py`) both run this class, so
the two give the same results by construction.

* Checkpoints are read from storage into a local cache folder named by their sha256, and the digest
  is checked on the way in: a request whose `ModelRef.sha256` differs from the stored file's is
  refused with `api.ModelServiceError` (wrong weights would silently break every click).
* One model stays loaded (the last one asked for): a model service serves one version at a time in
  practice, and a second one in memory would double the GPU memory.
* Embeddings are written here only, at `stored.embedding_key` (keyed by the encoder's identity), and
  an image whose embedding object exists is not computed again.
* Long operations call `progress` and poll `should_stop`: the detector and evaluation raise
  `api.OperationCancelled`; retraining returns an outcome with ``stopped_early`` and writes no model.
* `retrain` runs a round through `retraining` (its paths: decoder only or with the image encoder,
  here or under torchrun, resumable from storage) and stores the trained model as `create_untrained`
  stores a new one.
* The api's samples are read from storage by `stored_samples`.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from model_server import api
from model_server.service import retraining, stored, stored_samples, wire
from model_server.service.embedding_file import embedding_bytes
from model_server.service.embedding_model import EmbeddingModel, pick_device
from model_server.service.weights import (
    UNTRAINED_SEED,
    encoder_sha256,
    export_browser_decoders,
    file_sha256,
    save_model_checkpoint,
)
from model_server.storage import Storage

_SHA256 = re.compile(r"[0-9a-f]{64}")
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "dataengine-model-cache"


class InProcessModelService:
    """The model-service protocol in this process.

    Args:
        storage: the object store both sides share (images, embeddings, checkpoints, artifacts).
        cache_dir: local folder for checkpoints read from storage (by sha256) and work files;
            default a folder under the system's temporary directory.
        device: ``cuda``, ``cpu``...; None picks CUDA when available.
        max_batch: images per encoder forward when embedding.
        train_processes: processes of a retraining round: more than one trains under torchrun (DDP,
            one GPU each, or gloo on a CPU); None = the number of CUDA devices (1 on a CPU).
    """

    def __init__(
        self,
        storage: Storage,
        cache_dir: str | Path | None = None,
        *,
        device: str | None = None,
        max_batch: int = 8,
        train_processes: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if train_processes is not None and train_processes < 1:
            raise ValueError(f"train_processes must be >= 1, got {train_processes}")
        self.storage = storage
        self.cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.device = pick_device(device)
        self.max_batch = max_batch
        self.train_processes = train_processes if train_processes is not None else _cuda_devices()
        self._lock = threading.Lock()
        self._loaded: tuple[str, EmbeddingModel] | None = None  # (checkpoint sha256, model)
        self._encoders: dict[str, str] = {}  # checkpoint sha256 -> encoder sha256
        self._pinned: dict[str, Path] = {}  # checkpoint sha256 -> local file given at start

    # -- weights ---------------------------------------------------------------------------------

    def pin_local_checkpoint(self, architecture: str, path: str | Path) -> api.ModelInfo:
        """Serve `path` (a local weights file, e.g. on the GPU machine's disk) for requests naming
        its sha256, without reading it from storage; the model is loaded now."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"checkpoint {path}: no such file")
        sha = file_sha256(path)
        self._pinned[sha] = path
        model = self._model(api.ModelRef(architecture, f"local:{path.name}", sha))
        return api.ModelInfo(architecture, sha, model.encoder_sha256)

    def create_untrained(self, architecture: str, checkpoint_key: str) -> api.ModelInfo:
        from model_server.sam.build import build_sam

        _check_architecture(architecture)
        return self._store_model(architecture, build_sam(architecture, seed=UNTRAINED_SEED), checkpoint_key)

    def describe(self, architecture: str, checkpoint_key: str) -> api.ModelInfo:
        from model_server.sam.build import build_sam

        _check_architecture(architecture)
        with self._work_file(".pth") as tmp:
            self._download(checkpoint_key, tmp, "checkpoint")
            try:
                model = build_sam(architecture, checkpoint=tmp)
            except ValueError as error:
                raise ValueError(str(error).replace(str(tmp), repr(checkpoint_key))) from None
            sha = file_sha256(tmp)
            os.replace(tmp, self._cached(sha))
        self._encoders[sha] = encoder_sha256(model.image_encoder)
        return api.ModelInfo(architecture, sha, self._encoders[sha])

    # -- embeddings ------------------------------------------------------------------------------

    def embed(self, model: api.ModelRef, image_keys: Sequence[str]) -> list[api.EmbeddingInfo]:
        keys = _string_list(image_keys, "image_keys")
        encoder = self._encoder_sha256(model)
        infos: dict[str, api.EmbeddingInfo] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            target = stored.embedding_key(encoder, key)
            if self.storage.exists(target):
                _, original, inner = stored.read_embedding(self.storage, target)
                infos[key] = api.EmbeddingInfo(target, original, inner)
            else:
                missing.append(key)
        if missing:
            loaded = self._model(model)
            for start in range(0, len(missing), self.max_batch):
                chunk = missing[start : start + self.max_batch]
                results = loaded.embed([stored.read_image(self.storage, key) for key in chunk])
                for key, result in zip(chunk, results):
                    target = stored.embedding_key(encoder, key)
                    data = embedding_bytes(result.embedding, result.original_size, result.input_size)
                    self.storage.put_bytes(target, data)
                    infos[key] = api.EmbeddingInfo(target, result.original_size, result.input_size)
        return [infos[key] for key in keys]

    def embedding_wire(self, embedding: api.EmbeddingInfo, encoding: str) -> bytes:
        if encoding not in api.WIRE_ENCODINGS:
            raise ValueError(f"unknown embedding encoding {encoding!r}; expected one of {api.WIRE_ENCODINGS}")
        values, _, _ = stored.read_embedding(self.storage, embedding.key)
        return wire.encode(values, encoding)

    # -- masks -----------------------------------------------------------------------------------

    def automatic_masks(self, model: api.ModelRef, image_key: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        from model_server.amg import AutomaticMaskGenerator

        if not isinstance(params, Mapping):
            raise ValueError(f"generator params must be an object, got {params!r}")
        image = stored.read_image(self.storage, image_key)
        loaded = self._model(model)
        try:
            generator = AutomaticMaskGenerator(loaded.sam, **{**params, "output_mode": "coco_rle"})
        except TypeError as error:  # an unknown keyword
            raise ValueError(f"generator params: {error}") from None
        return generator.generate(image)

    def propose_masks(
        self, model: api.ModelRef, detector_key: str, embedding: api.EmbeddingInfo, params: api.ProposeParams
    ) -> api.Proposals:
        from model_server.detector.proposals import propose_masks
        from model_server.predictor import Predictor

        detector = self._detector(detector_key)
        values, original, inner = stored.read_embedding(self.storage, embedding.key)
        n_boxes, records = propose_masks(
            Predictor(self._model(model).sam),
            detector,
            values,
            original,
            inner,
            score_thresh=params.score_thresh,
            pred_iou_thresh=params.pred_iou_thresh,
            nms_thresh=params.nms_thresh,
            max_boxes=params.max_boxes,
        )
        return api.Proposals(n_boxes=n_boxes, records=records)

    def score_images(self, model: api.ModelRef, embeddings: Sequence[api.EmbeddingInfo]) -> list[api.ImageScores]:
        from model_server.selection import score_embedding  # issue 18's selection scores

        sam = self._model(model).sam
        scores = []
        for info in embeddings:
            values, original, inner = stored.read_embedding(self.storage, info.key)
            scores.append(score_embedding(sam, values, original, inner))
        return scores

    # -- the box detector ------------------------------------------------------------------------

    def train_detector(
        self,
        model: api.ModelRef,
        samples: Sequence[api.DetectorSample],
        config: Mapping[str, Any],
        out_key: str,
        *,
        progress: api.TrainProgress | None = None,
        should_stop: api.ShouldStop | None = None,
    ) -> dict[str, Any]:
        from model_server.detector import train_detector

        self._checkpoint(model)  # the embeddings are this model's: refuse other weights early
        detector, metrics = train_detector(
            stored_samples.detection_samples(self.storage, samples),
            dict(config),
            progress=progress,
            should_stop=should_stop,
        )
        if metrics["stopped_early"]:
            raise api.OperationCancelled("detector training was stopped; nothing was written")
        with self._work_file(".pt") as tmp:
            detector.save(tmp)
            self.storage.put_file(out_key, tmp)
        return metrics

    def evaluate_detector(
        self, detector_key: str, samples: Sequence[api.DetectorSample], score_thresh: float
    ) -> dict[str, float]:
        from model_server.detector import evaluate_detector

        detector = self._detector(detector_key)
        return evaluate_detector(
            detector, stored_samples.detection_samples(self.storage, samples), score_thresh=score_thresh
        )

    # -- SAM's decoder: retraining and evaluation ----------------------------------------------------

    def retrain(
        self,
        model: api.ModelRef,
        samples: Sequence[api.MaskSample] | Sequence[api.ImageMaskSample],
        config: Mapping[str, Any],
        out_key: str,
        *,
        work_prefix: str | None = None,
        progress: api.TrainProgress | None = None,
        should_stop: api.ShouldStop | None = None,
    ) -> api.TrainOutcome:
        train_config = retraining.train_config(config, self.device, self.train_processes)
        train_samples = retraining.train_samples(self.storage, samples, train_config)
        sam, result = retraining.train(
            model.architecture,
            self._checkpoint(model),
            train_samples,
            train_config,
            storage=self.storage,
            device=self.device,
            processes=self.train_processes,
            work_dir=self.cache_dir,
            work_prefix=work_prefix,
            progress=progress,
            should_stop=should_stop,
        )
        # The trained model's own encoder: a new identity when the round trained the encoder.
        info = None if result.stopped_early else self._store_model(model.architecture, sam, out_key)
        return api.TrainOutcome(
            steps_done=int(result.steps_done),
            losses=[float(v) for v in result.losses],
            stopped_early=bool(result.stopped_early),
            info=info,
        )

    def evaluate(
        self,
        model: api.ModelRef,
        samples: Sequence[api.MaskSample],
        *,
        max_clicks: int = 20,
        progress: api.CountProgress | None = None,
        should_stop: api.ShouldStop | None = None,
    ) -> dict[str, float]:
        from model_server.evaluation import evaluate

        masks = stored_samples.mask_samples(self.storage, samples)
        sam = self._model(model).sam

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)
            if should_stop is not None and done < total and should_stop():
                raise api.OperationCancelled(f"evaluation was stopped after {done} of {total} masks")

        metrics = evaluate(sam, masks, max_clicks=max_clicks, progress=report)
        return {key: float(value) for key, value in metrics.items()}

    # -- the browser's decoders --------------------------------------------------------------------

    def export_decoders(self, model: api.ModelRef, prefix: str) -> dict[str, str]:
        checkpoint = self._checkpoint(model)
        keys: dict[str, str] = {}
        with tempfile.TemporaryDirectory(dir=self.cache_dir) as work:
            files = export_browser_decoders(model.architecture, checkpoint, work)
            for name, path in files.items():
                keys[name] = f"{prefix.rstrip('/')}/{Path(path).name}"
                self.storage.put_file(keys[name], Path(path))
        return keys

    # -- helpers -----------------------------------------------------------------------------------

    def _cached(self, sha: str) -> Path:
        return self.cache_dir / f"{sha}.pth"

    def _store_model(self, architecture: str, sam: Any, key: str) -> api.ModelInfo:
        """Write `sam` to storage at `key` and to the local cache (by sha256), noting its encoder's identity."""
        with self._work_file(".pth") as tmp:
            sha = save_model_checkpoint(sam, tmp)
            with tmp.open("rb") as f:
                self.storage.put_stream(key, f)
            os.replace(tmp, self._cached(sha))
        self._encoders[sha] = encoder_sha256(sam.image_encoder)
        return api.ModelInfo(architecture, sha, self._encoders[sha])

    @contextmanager
    def _work_file(self, suffix: str):
        fd, name = tempfile.mkstemp(dir=self.cache_dir, suffix=suffix)
        os.close(fd)
        path = Path(name)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _download(self, key: str, path: Path, what: str) -> None:
        if not isinstance(key, str):
            raise ValueError(f"{what} key must be a string, got {key!r}")
        try:
            self.storage.download(key, path)
        except KeyError:
            raise ValueError(f"no {what} stored at {key!r}") from None

    def _checkpoint(self, model: api.ModelRef) -> Path:
        """The local file of `model`'s weights, read from storage once and checked against its sha256."""
        _check_architecture(model.architecture)
        if not isinstance(model.sha256, str) or not _SHA256.fullmatch(model.sha256):
            raise ValueError(f"model sha256 must be 64 lowercase hex digits, got {model.sha256!r}")
        if model.sha256 in self._pinned:
            return self._pinned[model.sha256]
        cached = self._cached(model.sha256)
        if cached.is_file():
            return cached
        with self._work_file(".pth") as tmp:
            self._download(model.checkpoint_key, tmp, "checkpoint")
            sha = file_sha256(tmp)
            if sha != model.sha256:
                raise api.ModelServiceError(
                    f"wrong weights: the checkpoint stored at {model.checkpoint_key!r} has sha256 {sha}, "
                    f"but {model.sha256} was asked for; refusing to run other weights"
                )
            os.replace(tmp, cached)
        return cached

    def _model(self, model: api.ModelRef) -> EmbeddingModel:
        """The loaded model of `model` (loading it, and dropping the previous one, when it changes)."""
        checkpoint = self._checkpoint(model)
        with self._lock:
            if (
                self._loaded is None
                or self._loaded[0] != model.sha256
                or self._loaded[1].architecture != model.architecture
            ):
                self._loaded = None  # free the old one before loading the next
                loaded = EmbeddingModel(model.architecture, checkpoint, device=str(self.device))
                self._encoders[model.sha256] = loaded.encoder_sha256
                self._loaded = (model.sha256, loaded)
            return self._loaded[1]

    def _encoder_sha256(self, model: api.ModelRef) -> str:
        self._checkpoint(model)
        known = self._encoders.get(model.sha256)
        return known if known is not None else self._model(model).encoder_sha256

    def _detector(self, key: str) -> Any:
        from model_server.detector import Detector

        with self._work_file(".pt") as tmp:
            self._download(key, tmp, "detector")
            try:
                return Detector.load(tmp)
            except ValueError as error:
                raise ValueError(str(error).replace(str(tmp), repr(key))) from None


def _cuda_devices() -> int:
    import torch

    return max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else 1


def _check_architecture(architecture: str) -> None:
    if architecture not in api.ARCHITECTURES + api.TEST_ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {api.ARCHITECTURES}")


def _string_list(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{what} must be a list of storage keys")
    return list(values)
