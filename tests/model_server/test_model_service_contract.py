"""The model-service contract: the same tests against both implementations of `api.ModelService`.

`in_process` runs the model in the test's process; `http` is the real model service (uvicorn on
127.0.0.1, in a thread) reached through `HttpModelService`. Each has its own storage folder, which the
test opens too (the service and its caller share only the object store). Every operation is run on
both and its results compared: embeddings byte-equal, automatic-mask records, detector and
retraining outcomes for fixed seeds, evaluation metrics, decoder exports. Plus the HTTP errors:
service down, wrong weights, cancelling a long operation across the boundary.

Untrained vit_t weights and tiny images and configs: the cost is the encoder (one 1024² frame per
image) and ONNX export, a few of each per implementation.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from fastapi import FastAPI
from PIL import Image
from pydantic_core import to_jsonable_python

from model_server import api
from model_server.rle import coco_decode, coco_encode, masks_to_rle
from model_server.service.embedding_file import parse_embedding
from model_server.service.embedding_model import EmbeddingModel
from model_server.service.http_client import HttpModelService
from model_server.service.in_process import InProcessModelService
from model_server.service.server import create_app
from model_server.service.wire import decode_int8
from model_server.storage.local import LocalStorage
from tests.ports import free_port

IMPLEMENTATIONS = ["in_process", "http"]
IMAGES = ("images/ab/first.png", "images/cd/second.jpg")
SIZE = (40, 56)  # (h, w) of the stored pictures; the second is stored rotated with an EXIF tag
AMG_PARAMS = {"points_per_side": 2, "points_per_batch": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
DETECTOR_CONFIG = {"epochs": 2, "width": 8, "depth": 1, "min_boxes": 1, "batch_size": 2}
TRAIN_CONFIG = {
    "steps": 2,
    "batch_size": 1,
    "clicks_per_sample": 0,
    "no_point_rounds": 0,
    "warmup_steps": 1,
    "checkpoint_every": 1,
}
# A whole-model round of the tiny vit_test encoder: two steps of both images, one click each.
ENCODER_CONFIG = {
    **TRAIN_CONFIG,
    "batch_size": 2,
    "clicks_per_sample": 1,
    "lr": 1e-3,
    "encoder_mode": "full",
    "allow_cpu_encoder_training": True,
}


def _picture(seed: int) -> np.ndarray:
    """A 40x56 RGB picture with a bright rectangle on noise (something for the decoder to find)."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((*SIZE, 3)) * 60).astype(np.uint8)
    pixels[8:30, 10:40] = 220
    return pixels


def _store_images(storage: LocalStorage) -> None:
    png = io.BytesIO()
    Image.fromarray(_picture(0)).save(png, "PNG")
    storage.put_bytes(IMAGES[0], png.getvalue())
    # Stored as a 56x40 JPEG whose EXIF orientation 6 (rotate 90° clockwise to display) makes it 40x56.
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = io.BytesIO()
    Image.fromarray(np.rot90(_picture(1), k=1)).save(jpeg, "JPEG", exif=exif, quality=95)
    storage.put_bytes(IMAGES[1], jpeg.getvalue())


def _rle(mask: np.ndarray) -> dict[str, Any]:
    return coco_encode(masks_to_rle(torch.as_tensor(mask)[None])[0])


@dataclass
class Env:
    """One implementation with its storage, the untrained model and results computed once."""

    name: str
    service: Any
    storage: LocalStorage
    info: api.ModelInfo
    ref: api.ModelRef
    cache: dict[str, Any] = field(default_factory=dict)

    def once(self, what: str, compute):
        if what not in self.cache:
            self.cache[what] = compute()
        return self.cache[what]

    def embeddings(self) -> list[api.EmbeddingInfo]:
        return self.once("embed", lambda: self.service.embed(self.ref, list(IMAGES)))

    def detector_samples(self) -> list[api.DetectorSample]:
        first, second = self.embeddings()
        return [
            api.DetectorSample(first, [[10, 8, 40, 30], [0, 0, 8, 8]]),
            api.DetectorSample(second, [[10, 8, 40, 30]]),
            api.DetectorSample(first, [[12, 10, 38, 28]]),
        ]

    def mask_samples(self) -> list[api.MaskSample]:
        return [api.MaskSample(info, _rle(_object_mask())) for info in self.embeddings()]

    def tiny(self) -> api.ModelRef:
        """The untrained tiny test encoder's model (for rounds that train the encoder on a CPU)."""
        info = self.once("vit_test", lambda: self.service.create_untrained("vit_test", "models/tiny.pth"))
        return api.ModelRef("vit_test", "models/tiny.pth", info.sha256)

    def image_samples(self) -> list[api.ImageMaskSample]:
        return [api.ImageMaskSample(key, _rle(_object_mask())) for key in IMAGES]


def _object_mask() -> np.ndarray:
    """The bright rectangle of `_picture`, in the displayed frame of both stored images."""
    mask = np.zeros(SIZE, bool)
    mask[8:30, 10:40] = True
    return mask


class _Server:
    """A real uvicorn server on 127.0.0.1 in a thread (same process: the same torch threads, so the
    same floating-point results as in process)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{free_port()}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=int(self.url.rsplit(":", 1)[1]), log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "model service did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _make_env(name: str, root: Path, servers: list[_Server]) -> Env:
    storage = LocalStorage(root / "storage")
    _store_images(storage)
    service: Any
    if name == "http":
        # The service opens the same folder on its own; the test reaches it over HTTP only.
        app = create_app(InProcessModelService(LocalStorage(root / "storage"), root / "cache"), max_wait_ms=20)
        servers.append(_Server(app))
        service = HttpModelService(servers[-1].url, poll_s=0.05)
    else:
        service = InProcessModelService(storage, root / "cache")
    info = service.create_untrained("vit_t", "models/untrained.pth")
    return Env(name, service, storage, info, api.ModelRef("vit_t", "models/untrained.pth", info.sha256))


@pytest.fixture(scope="module")
def servers() -> Iterator[list[_Server]]:
    running: list[_Server] = []
    yield running
    for server in running:
        server.stop()


@pytest.fixture(scope="module")
def envs(tmp_path_factory, servers) -> dict[str, Env]:
    return {name: _make_env(name, tmp_path_factory.mktemp(name), servers) for name in IMPLEMENTATIONS}


@pytest.fixture(params=IMPLEMENTATIONS)
def env(request, envs) -> Env:
    return envs[request.param]


def _equal_everywhere(values: dict[str, Any]) -> None:
    first = next(iter(values.values()))
    for name, value in values.items():
        assert value == first, f"{name} differs from {next(iter(values))}"


# -- weights -----------------------------------------------------------------------------------------


def test_untrained_weights_are_the_same_everywhere_and_described_strictly(env, envs):
    _equal_everywhere({name: e.info for name, e in envs.items()})
    assert env.service.describe("vit_t", "models/untrained.pth") == env.info
    assert env.info.architecture == "vit_t" and env.info.sha256 != env.info.encoder_sha256
    with pytest.raises(ValueError, match="vit_b"):
        env.service.describe("vit_b", "models/untrained.pth")
    with pytest.raises(ValueError, match="models/missing.pth"):
        env.service.describe("vit_t", "models/missing.pth")
    with pytest.raises(ValueError, match="unknown architecture"):
        env.service.describe("vit_x", "models/untrained.pth")


def test_wrong_weights_are_refused(env):
    env.storage.put_bytes("models/impostor.pth", env.storage.get("models/untrained.pth") + b"tampered")
    impostor = api.ModelRef("vit_t", "models/impostor.pth", env.info.sha256[::-1])
    with pytest.raises(api.ModelServiceError, match="wrong weights"):
        env.service.embed(impostor, [IMAGES[0]])
    with pytest.raises(api.ModelServiceError, match="wrong weights"):
        env.service.export_decoders(impostor, "decoders/impostor")
    assert not env.storage.exists("decoders/impostor/decoder.onnx")


# -- embeddings --------------------------------------------------------------------------------------


def test_embed_writes_each_embedding_once_under_the_encoder_identity(env, envs):
    infos = env.embeddings()
    encoder = env.info.encoder_sha256
    assert [i.key for i in infos] == [f"embeddings/{encoder}/first.npz", f"embeddings/{encoder}/second.npz"]
    # EXIF orientation applied: the rotated JPEG is embedded as it is displayed, 40x56.
    assert [(i.original_size, i.input_size) for i in infos] == [(SIZE, (731, 1024))] * 2
    stored = {name: [e.storage.get(i.key) for i in e.embeddings()] for name, e in envs.items()}
    _equal_everywhere(stored)  # byte-equal

    # The object exists, so nothing is computed again: the image itself is not even read.
    env.storage.put_bytes("images/zz/first.png", b"not an image")
    again = env.service.embed(env.ref, ["images/zz/first.png", IMAGES[0]])
    assert again == [infos[0], infos[0]]
    with pytest.raises(ValueError, match="images/zz/broken.png"):
        env.storage.put_bytes("images/zz/broken.png", b"not an image")
        env.service.embed(env.ref, ["images/zz/broken.png"])
    with pytest.raises(ValueError, match="images/none.png"):
        env.service.embed(env.ref, ["images/none.png"])
    assert env.service.embed(env.ref, []) == []


def test_embeddings_are_the_encoders_output(envs):
    """One implementation against the model itself (the others equal it byte for byte, above)."""
    env = envs["in_process"]
    model = EmbeddingModel("vit_t", env.service.cache_dir / f"{env.info.sha256}.pth", device="cpu")
    stored, original, inner = parse_embedding(env.storage.get(env.embeddings()[0].key), "first")
    expected = model.embed([_picture(0)])[0]
    assert (original, inner) == (expected.original_size, expected.input_size)
    assert stored.tobytes() == expected.embedding[0].tobytes()


def test_embedding_wire_encodings(env, envs):
    info = env.embeddings()[0]
    values, _, _ = parse_embedding(env.storage.get(info.key), info.key)
    float16 = env.service.embedding_wire(info, api.WIRE_FLOAT16)
    assert float16 == api.embedding_to_bytes(values)
    int8 = env.service.embedding_wire(info, api.WIRE_INT8)
    assert len(int8) == 256 * 4 + 256 * 64 * 64
    scales = np.frombuffer(int8, dtype="<f4", count=256)
    error = np.abs(decode_int8(int8).reshape(256, -1) - values.reshape(256, -1).astype(np.float32))
    assert (error <= scales[:, None] * 0.5 + 1e-3).all()
    _equal_everywhere({n: e.service.embedding_wire(e.embeddings()[0], api.WIRE_INT8) for n, e in envs.items()})
    with pytest.raises(ValueError, match="int4"):
        env.service.embedding_wire(info, "int4")


# -- masks -------------------------------------------------------------------------------------------


def test_automatic_masks(env, envs):
    records = env.once("amg", lambda: env.service.automatic_masks(env.ref, IMAGES[0], AMG_PARAMS))
    assert records and all(coco_decode(r["segmentation"]).shape == SIZE for r in records)
    assert {"segmentation", "area", "bbox", "predicted_iou", "stability_score", "point_coords", "crop_box"} <= set(
        records[0]
    )
    if len(envs) > 1:
        _equal_everywhere(
            {
                n: e.once("amg", lambda e=e: e.service.automatic_masks(e.ref, IMAGES[0], AMG_PARAMS))
                for n, e in envs.items()
            },
        )
    with pytest.raises(ValueError, match="pred_iou_thresh"):
        env.service.automatic_masks(env.ref, IMAGES[0], {"pred_iou_thresh": 2})
    with pytest.raises(ValueError, match="no_such_param"):
        env.service.automatic_masks(env.ref, IMAGES[0], {"no_such_param": 1})


def _train_detector(env: Env) -> tuple[dict[str, Any], list[tuple[int, int, float]]]:
    """The detector `det/d.pt` of `env`, trained once: its metrics and the progress calls."""

    def train() -> tuple[dict[str, Any], list[tuple[int, int, float]]]:
        steps: list[tuple[int, int, float]] = []
        metrics = env.service.train_detector(
            env.ref, env.detector_samples(), DETECTOR_CONFIG, "det/d.pt", progress=lambda *a: steps.append(a)
        )
        return metrics, steps

    return env.once("detector", train)


def test_detector_train_evaluate_propose(env, envs):
    metrics, steps = _train_detector(env)
    assert [s[:2] for s in steps] == [(1, 2), (2, 2)] and metrics["epochs_done"] == 2
    assert [s[2] for s in steps] == metrics["losses"] and env.storage.exists("det/d.pt")
    _equal_everywhere({n: _train_detector(e) for n, e in envs.items()})  # fixed seed: the same run

    scores = {n: e.service.evaluate_detector("det/d.pt", e.detector_samples(), 0.0) for n, e in envs.items()}
    _equal_everywhere(scores)
    assert {"recall_50", "precision_50", "ap50"} <= set(scores[env.name])

    params = api.ProposeParams(score_thresh=0.0, pred_iou_thresh=0.0, nms_thresh=0.5, max_boxes=3)
    proposals = {n: e.service.propose_masks(e.ref, "det/d.pt", e.embeddings()[0], params) for n, e in envs.items()}
    _equal_everywhere(proposals)
    assert proposals[env.name].n_boxes == 3 and len(proposals[env.name].records) <= 3

    with pytest.raises(ValueError, match="det/none.pt"):
        env.service.evaluate_detector("det/none.pt", env.detector_samples(), 0.5)
    env.storage.put_bytes("det/junk.pt", b"not a detector")
    with pytest.raises(ValueError, match="'det/junk.pt': not a readable detector file"):
        env.service.propose_masks(env.ref, "det/junk.pt", env.embeddings()[0], params)
    with pytest.raises(ValueError, match="too few training boxes"):
        env.service.train_detector(env.ref, env.detector_samples(), {**DETECTOR_CONFIG, "min_boxes": 50}, "det/x.pt")
    with pytest.raises(ValueError, match="unknown detector config"):
        env.service.train_detector(env.ref, env.detector_samples(), {"nope": 1}, "det/x.pt")


def test_stopping_detector_training_raises_and_writes_nothing(env):
    with pytest.raises(api.OperationCancelled):
        env.service.train_detector(
            env.ref,
            env.detector_samples(),
            {**DETECTOR_CONFIG, "epochs": 500},
            "det/stopped.pt",
            should_stop=lambda: True,
        )
    assert not env.storage.exists("det/stopped.pt")


# -- retraining and evaluation -------------------------------------------------------------------------


def test_retrain_resumes_from_storage_and_keeps_the_encoder(env, envs):
    outcomes = {
        n: e.once("retrain", lambda e=e: e.service.retrain(e.ref, e.mask_samples(), TRAIN_CONFIG, "models/r1.pth"))
        for n, e in envs.items()
    }
    _equal_everywhere(outcomes)
    outcome = outcomes[env.name]
    assert outcome.steps_done == 2 and not outcome.stopped_early and outcome.info is not None
    # Only the decoder learns: the new version shares its encoder, hence its embeddings.
    assert outcome.info.encoder_sha256 == env.info.encoder_sha256 and outcome.info.sha256 != env.info.sha256
    assert env.service.describe("vit_t", "models/r1.pth") == outcome.info

    # Stopped once a step is done (over HTTP the stop reaches the service a poll later, hence
    # "a step or two" of a long run): no model written, the run's state kept under work_prefix ...
    seen: list[int] = []
    stopped = env.service.retrain(
        env.ref,
        env.mask_samples(),
        {**TRAIN_CONFIG, "steps": 1000},
        "models/r2.pth",
        work_prefix="work/run",
        progress=lambda step, total, loss: seen.append(step),
        should_stop=lambda: bool(seen),
    )
    assert stopped.stopped_early and stopped.info is None and stopped.steps_done in (1, 2)
    assert stopped.losses == outcome.losses[: stopped.steps_done]
    assert not env.storage.exists("models/r2.pth")
    assert list(env.storage.list("work/run/")) == [f"work/run/checkpoint_{stopped.steps_done:07d}.pt"]
    # ... from which a rerun continues to the very model the uninterrupted run made.
    steps: list[int] = []
    resumed = env.service.retrain(
        env.ref,
        env.mask_samples(),
        TRAIN_CONFIG,
        "models/r2.pth",
        work_prefix="work/run",
        progress=lambda step, total, loss: steps.append(step),
    )
    assert steps == [2][: 2 - stopped.steps_done] and resumed == outcome  # the same weights, byte for byte

    with pytest.raises(ValueError, match="no_such_field"):
        env.service.retrain(env.ref, env.mask_samples(), {"no_such_field": 1}, "models/x.pth")
    bad = api.MaskSample(env.embeddings()[0], _rle(np.ones((3, 3), bool)))
    with pytest.raises(ValueError, match="sample 0"):
        env.service.retrain(env.ref, [bad], TRAIN_CONFIG, "models/x.pth")


def test_whole_model_retrain_trains_the_encoder_and_embeds_with_it(env, envs):
    outcomes = {
        n: e.once(
            "retrain_full",
            lambda e=e: e.service.retrain(e.tiny(), e.image_samples(), ENCODER_CONFIG, "models/full.pth"),
        )
        for n, e in envs.items()
    }
    _equal_everywhere(outcomes)  # fixed seeds: the same round, the same weights
    outcome = outcomes[env.name]
    assert outcome.steps_done == 2 and not outcome.stopped_early and outcome.info is not None
    parent = env.service.describe("vit_test", "models/tiny.pth")
    # The encoder learnt: the outcome names the new encoder, as a strict load of the file does.
    assert outcome.info.encoder_sha256 != parent.encoder_sha256
    assert env.service.describe("vit_test", "models/full.pth") == outcome.info
    new = api.ModelRef("vit_test", "models/full.pth", outcome.info.sha256)
    infos = env.service.embed(new, list(IMAGES))
    assert [i.key for i in infos] == [f"embeddings/{outcome.info.encoder_sha256}/{k}.npz" for k in ("first", "second")]
    before = env.service.embed(env.tiny(), [IMAGES[0]])[0]
    assert env.storage.get(infos[0].key) != env.storage.get(before.key)
    # Evaluated on its own embeddings, and its decoder exported for the browser, as any model.
    held_out = [api.MaskSample(info, _rle(_object_mask())) for info in infos]
    assert env.service.evaluate(new, held_out, max_clicks=1)["n_samples"] == 2.0
    assert env.service.export_decoders(new, "decoders/full")["decoder"] == "decoders/full/decoder.onnx"


def test_whole_model_retrain_refuses_the_wrong_samples_and_a_cpu_unasked(env):
    images, masks = env.image_samples(), env.mask_samples()
    frozen = {k: v for k, v in ENCODER_CONFIG.items() if k != "encoder_mode"}
    with pytest.raises(ValueError, match="encoder_mode 'frozen' trains the decoder on cached embeddings"):
        env.service.retrain(env.tiny(), images, frozen, "models/x.pth")
    with pytest.raises(ValueError, match="every sample must be an ImageMaskSample"):
        env.service.retrain(env.tiny(), masks, ENCODER_CONFIG, "models/x.pth")
    with pytest.raises(ValueError):  # a mix (over HTTP the request's schema refuses it)
        env.service.retrain(env.tiny(), [images[0], masks[0]], ENCODER_CONFIG, "models/x.pth")
    with pytest.raises(ValueError, match="images/none.png"):
        missing = api.ImageMaskSample("images/none.png", images[0].rle)
        env.service.retrain(env.tiny(), [missing], ENCODER_CONFIG, "models/x.pth")
    with pytest.raises(ValueError, match="sample 1: mask of 3x3 does not match image"):
        wrong = api.ImageMaskSample(IMAGES[1], _rle(np.ones((3, 3), bool)))
        env.service.retrain(env.tiny(), [images[0], wrong], ENCODER_CONFIG, "models/x.pth")
    unasked = {**ENCODER_CONFIG, "allow_cpu_encoder_training": False}
    with pytest.raises(ValueError, match="runs on a CPU .* takes days .* DATAENGINE_ALLOW_CPU_ENCODER_TRAINING"):
        env.service.retrain(env.tiny(), images, unasked, "models/x.pth")
    assert not env.storage.exists("models/x.pth")


def test_evaluate(env, envs):
    def evaluate(e: Env) -> tuple[dict[str, float], list[tuple[int, int]]]:
        counts: list[tuple[int, int]] = []
        metrics = e.service.evaluate(e.ref, e.mask_samples(), max_clicks=1, progress=lambda *a: counts.append(a))
        return metrics, counts

    results = {n: e.once("evaluate", lambda e=e: evaluate(e)) for n, e in envs.items()}
    _equal_everywhere(results)
    metrics, counts = results[env.name]
    assert counts == [(1, 2), (2, 2)] and metrics["n_samples"] == 2.0
    assert {"miou_1pt", "miou_at_1", "noc85", "noc90"} <= set(metrics)
    with pytest.raises(api.OperationCancelled):
        env.service.evaluate(env.ref, env.mask_samples(), max_clicks=1, should_stop=lambda: True)
    with pytest.raises(ValueError, match="no samples"):
        env.service.evaluate(env.ref, [], max_clicks=1)


# -- the browser's decoders ----------------------------------------------------------------------------


def test_export_decoders(env):
    keys = env.service.export_decoders(env.ref, "decoders/v1")
    assert keys == {
        "decoder": "decoders/v1/decoder.onnx",
        "decoder_image": "decoders/v1/decoder.image.onnx",
        "decoder_click": "decoders/v1/decoder.click.onnx",
    }
    assert all(env.storage.size(key) > 1000 for key in keys.values())


# -- HTTP only: the boundary's own failures ------------------------------------------------------------


def test_service_down_is_a_clear_error_after_retries(envs):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    down = HttpModelService(url, retries=2, backoff_s=0.01)
    started = time.monotonic()
    with pytest.raises(api.ModelServiceError, match=f"model service at {url} is unreachable \\(3 attempts\\)"):
        down.embed(envs["in_process"].ref, [IMAGES[0]])
    assert time.monotonic() - started >= 0.03  # backed off between the attempts


def test_a_pinned_service_refuses_other_weights(envs, servers, tmp_path):
    env = envs["http"]
    root = Path(env.storage.root)
    local = tmp_path / "pinned.pth"
    local.write_bytes(env.storage.get("models/untrained.pth"))
    service = InProcessModelService(LocalStorage(root), tmp_path / "cache")
    server = _Server(create_app(service, pinned=service.pin_local_checkpoint("vit_t", local)))
    servers.append(server)
    client = HttpModelService(server.url)
    health = client.health()
    assert (health.architecture, health.checkpoint_sha256) == ("vit_t", env.info.sha256)
    assert client.embed(env.ref, [IMAGES[0]]) == env.embeddings()[:1]
    other = api.ModelRef("vit_t", "models/untrained.pth", "f" * 64)
    with pytest.raises(api.ModelServiceError, match="pinned to checkpoint sha256"):
        client.embed(other, [IMAGES[0]])
    with pytest.raises(api.ModelServiceError, match="serves vit_t only"):
        client.automatic_masks(api.ModelRef("vit_b", "models/untrained.pth", env.info.sha256), IMAGES[0], {})


def test_cancelling_a_long_operation_over_http_stops_it(envs, servers):
    env = envs["http"]
    epochs: list[int] = []
    with pytest.raises(api.OperationCancelled):
        env.service.train_detector(
            env.ref,
            env.detector_samples(),
            {**DETECTOR_CONFIG, "epochs": 500},
            "det/cancelled.pt",
            progress=lambda epoch, total, loss: epochs.append(epoch),
            should_stop=lambda: len(epochs) >= 1,
        )
    assert 1 <= len(epochs) < 500 and not env.storage.exists("det/cancelled.pt")
    operations = servers[0].app.state.operations.values()
    assert [op.state for op in operations if op.kind == "train_detector" and op.stop.is_set()][-1] == "cancelled"


def test_a_caller_that_gives_up_cancels_the_operation_on_the_service(envs, servers):
    """The product's jobs learn of a cancel from their progress call (it raises): the operation on the
    model side must stop too, not train on for nobody."""
    env = envs["http"]

    class JobCancelled(Exception):
        pass

    def progress(epoch: int, total: int, loss: float) -> None:
        raise JobCancelled

    with pytest.raises(JobCancelled):
        env.service.train_detector(
            env.ref, env.detector_samples(), {**DETECTOR_CONFIG, "epochs": 500}, "det/abandoned.pt", progress=progress
        )
    (operation,) = [op for op in servers[0].app.state.operations.values() if op.kind == "train_detector"][-1:]
    deadline = time.monotonic() + 60
    while operation.state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert operation.stop.is_set() and operation.state == "cancelled"
    assert not env.storage.exists("det/abandoned.pt")


def test_a_malformed_request_is_a_422_naming_the_field(envs, servers):
    body = {"model": to_jsonable_python(envs["http"].ref), "image_keys": "images/ab/first.png"}
    answer = httpx.post(f"{servers[0].url}/v1/embed", json=body)
    assert answer.status_code == 422 and "image_keys" in answer.text


def test_score_images(env, envs):
    scores = {n: e.service.score_images(e.ref, e.embeddings()) for n, e in envs.items()}
    _equal_everywhere(scores)
    assert len(scores[env.name]) == 2
    for score in scores[env.name]:
        assert len(score.pooled) == 256 and 0.0 <= score.uncertainty <= 1.0 and score.details
    with pytest.raises(ValueError, match="embeddings/none.npz"):
        env.service.score_images(env.ref, [api.EmbeddingInfo("embeddings/none.npz", SIZE, (731, 1024))])
