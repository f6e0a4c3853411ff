"""The backend's one door to the model: in process (embedded mode) and over HTTP to a real service."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

from backend.clients.model_server import ModelServerClient, ModelServerError, ModelSpec
from model_server.service.server import create_service


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> ModelSpec:
    path = tmp_path_factory.mktemp("ckpt") / "untrained_vit_t.pth"
    sha = ModelServerClient().save_untrained_checkpoint("vit_t", path)
    return ModelSpec("vit_t", path, sha)


@pytest.fixture(scope="module")
def images(data_root: Path) -> list[np.ndarray]:
    return [
        np.asarray(Image.open(data_root / "grabcut" / "images" / n).convert("RGB"))
        for n in ("106024.jpg", "153077.jpg")
    ]


@pytest.fixture(scope="module")
def server_url(spec: ModelSpec) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_service("vit_t", str(spec.checkpoint), "cpu", max_batch=4, max_wait_ms=50)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "model server did not start"
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def test_in_process_and_http_give_the_same_embeddings(spec, images, server_url):
    local = ModelServerClient(None).embed(images, spec)
    remote_client = ModelServerClient(server_url)
    remote = remote_client.embed(images, spec)
    for a, b, image in zip(local, remote, images):
        assert a.original_size == b.original_size == image.shape[:2]
        assert a.input_size == b.input_size and max(a.input_size) == 1024
        assert a.embedding.shape == (1, 256, 64, 64) and a.embedding.dtype == np.float16
        np.testing.assert_allclose(a.embedding.astype(np.float32), b.embedding.astype(np.float32), atol=2e-3, rtol=2e-3)
    health = remote_client.health()
    assert health.architecture == "vit_t" and health.checkpoint_sha256 == spec.sha256


def test_http_refuses_a_server_holding_other_weights(spec, images, server_url):
    other = ModelSpec("vit_t", spec.checkpoint, "0" * 64)
    with pytest.raises(ModelServerError, match="start it with that checkpoint"):
        ModelServerClient(server_url).embed(images[:1], other)


def test_unreachable_server_and_bad_images_are_clear_errors(spec, images):
    with pytest.raises(ModelServerError, match="not healthy"):
        ModelServerClient("http://127.0.0.1:9", timeout=2).embed(images[:1], spec)
    with pytest.raises(ValueError, match="HxWx3"):
        ModelServerClient(None).embed([np.zeros((5, 5), np.uint8)], spec)
    assert ModelServerClient(None).embed([], spec) == []


def test_verify_checkpoint_is_strict(spec, tmp_path):
    client = ModelServerClient()
    assert client.verify_checkpoint("vit_t", spec.checkpoint) == spec.sha256
    with pytest.raises(ValueError, match="does not match SAM vit_b"):
        client.verify_checkpoint("vit_b", spec.checkpoint)
    with pytest.raises(FileNotFoundError):
        client.verify_checkpoint("vit_t", tmp_path / "missing.pth")


AMG_PARAMS = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}


def test_automatic_masks_over_http_are_the_in_process_ones(spec, images, server_url):
    """The auto worker in production sends its images to the model server (DESIGN.md §3): same
    records as the generator in the worker's own process."""
    local = ModelServerClient(None).automatic_masks(images[0], spec, AMG_PARAMS)
    remote = ModelServerClient(server_url).automatic_masks(images[0], spec, AMG_PARAMS)
    assert len(local) > 50  # untrained weights, every threshold at 0: big, unstable masks
    assert [r["segmentation"] for r in remote] == [r["segmentation"] for r in local]
    for a, b in zip(local, remote):
        assert a["bbox"] == b["bbox"] and a["area"] == b["area"] and a["point_coords"] == b["point_coords"]
        assert a["crop_box"] == b["crop_box"]
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-5)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=1e-5)


def test_automatic_masks_over_http_name_a_refused_parameter(spec, images, server_url):
    client = ModelServerClient(server_url)
    with pytest.raises(ValueError, match="points_per_side"):
        client.automatic_masks(images[0], spec, {**AMG_PARAMS, "points_per_side": 0})
    with pytest.raises(ValueError, match="no_such_parameter"):
        client.automatic_masks(images[0], spec, {"no_such_parameter": 1})
    with pytest.raises(ModelServerError, match="start it with that checkpoint"):
        client.automatic_masks(images[0], ModelSpec("vit_t", spec.checkpoint, "0" * 64), AMG_PARAMS)
