"""The model service's app: health, micro-batching of concurrent embed requests, parity with the predictor."""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic_core import to_jsonable_python

from model_server import api
from model_server.predictor import Predictor
from model_server.service.batcher import MicroBatcher
from model_server.service.embedding_file import parse_embedding
from model_server.service.embedding_model import EmbeddingModel
from model_server.service.http_client import HttpModelService
from model_server.service.in_process import InProcessModelService
from model_server.service.server import create_app
from model_server.storage.local import LocalStorage

NAMES = ("106024.jpg", "124080.jpg", "153077.jpg")


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    return EmbeddingModel("vit_t")  # seeded untrained weights


@pytest.fixture(scope="module")
def served(tmp_path_factory, data_root: Path) -> tuple[InProcessModelService, api.ModelRef]:
    """A service on a storage folder holding three real photographs and the untrained vit_t."""
    root = tmp_path_factory.mktemp("served")
    storage = LocalStorage(root / "storage")
    for name in NAMES:
        storage.put_bytes(f"images/{name}", (data_root / "grabcut" / "images" / name).read_bytes())
    service = InProcessModelService(storage, root / "cache")
    info = service.create_untrained("vit_t", "models/untrained.pth")
    return service, api.ModelRef("vit_t", "models/untrained.pth", info.sha256)


def test_health_of_an_unpinned_service(served):
    service, _ = served
    with TestClient(create_app(service, max_batch=4, max_wait_ms=5)) as client:
        health = client.get("/v1/health").json()
    assert health == {
        "status": "ok",
        "architecture": None,
        "device": "cpu",
        "dtype": "float32",
        "checkpoint_sha256": None,
        "queue_depth": 0,
        "max_batch": 4,
        "max_wait_ms": 5.0,
    }


def test_concurrent_requests_share_one_batch_and_match_the_predictor(served, data_root):
    service, ref = served
    app = create_app(service, max_batch=len(NAMES), max_wait_ms=5000)
    responses: list = [None] * len(NAMES)
    with TestClient(app) as client:

        def send(i: int) -> None:
            body = {"model": to_jsonable_python(ref), "image_keys": [f"images/{NAMES[i]}"]}
            responses[i] = client.post("/v1/embed", json=body)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(NAMES))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert app.state.batcher.batch_sizes == [len(NAMES)]  # one forward for all three

    predictor = Predictor(service._model(ref).sam)
    for name, response in zip(NAMES, responses):
        assert response.status_code == 200, response.text
        [info] = response.json()["embeddings"]
        embedding, original, inner = parse_embedding(service.storage.get(info["key"]), info["key"])
        image = np.asarray(Image.open(io.BytesIO(service.storage.get(f"images/{name}"))).convert("RGB"))
        predictor.set_image(image)
        assert original == predictor.original_size == image.shape[:2] and inner == predictor.input_size
        assert embedding.dtype == np.float16 and embedding.shape == (256, 64, 64)
        # float16 rounding only: half a unit in the last place of float16, relative to the value.
        reference = predictor.embedding.numpy()[0]
        np.testing.assert_allclose(embedding.astype(np.float32), reference, rtol=2e-3, atol=2e-3)


def test_one_bad_image_fails_only_its_own_request(served):
    service, ref = served
    service.storage.put_bytes("images/broken.jpg", b"not a picture")
    app = create_app(service, max_batch=2, max_wait_ms=5000)
    responses: dict[str, object] = {}
    with TestClient(app) as client:

        def send(key: str) -> None:
            responses[key] = client.post("/v1/embed", json={"model": to_jsonable_python(ref), "image_keys": [key]})

        threads = [threading.Thread(target=send, args=(k,)) for k in ("images/broken.jpg", f"images/{NAMES[0]}")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert app.state.batcher.batch_sizes == [2]
    bad, good = responses["images/broken.jpg"], responses[f"images/{NAMES[0]}"]
    assert bad.status_code == 422 and "images/broken.jpg" in bad.json()["detail"]  # type: ignore[attr-defined]
    assert good.status_code == 200  # type: ignore[attr-defined]


def test_bad_requests_are_4xx(served):
    service, ref = served
    model = to_jsonable_python(ref)
    with TestClient(create_app(service)) as client:
        assert client.post("/v1/embed", json={"image_keys": []}).status_code == 422
        missing = client.post("/v1/embed", json={"model": model, "image_keys": ["images/none.jpg"]})
        assert missing.status_code == 422 and "images/none.jpg" in missing.json()["detail"]
        refused = client.post(
            "/v1/automatic-masks",
            json={"model": model, "image_key": f"images/{NAMES[0]}", "params": {"pred_iou_thresh": 2}},
        )
        assert refused.status_code == 422 and "pred_iou_thresh" in refused.json()["detail"]
        wrong = client.post(
            "/v1/embed", json={"model": {**model, "sha256": "0" * 64}, "image_keys": [f"images/{NAMES[0]}"]}
        )
        assert wrong.status_code == 409 and "wrong weights" in wrong.json()["detail"]
        assert client.post("/v1/operations/nope", json={}).status_code == 404
        assert client.get("/v1/operations/none").status_code == 404
        assert client.post("/v1/operations/evaluate", json={"model": model}).status_code == 422


def test_batcher_gathers_up_to_max_batch_and_survives_a_failing_batch():
    calls: list[int] = []

    def embed(batch):
        calls.append(len(batch))
        if any(int(x) < 0 for x in batch):
            raise ValueError("bad image")
        return [ValueError("item 0") if x == 0 else x * 10 for x in batch]

    async def scenario():
        batcher = MicroBatcher(embed, max_batch=2, max_wait_ms=200)
        await batcher.start()
        ok = await asyncio.gather(*(batcher.embed(i) for i in (1, 2, 3)))
        with pytest.raises(ValueError, match="bad image"):
            await batcher.embed(-1)
        with pytest.raises(ValueError, match="item 0"):  # a result that is an error fails its item
            await batcher.embed(0)
        again = await batcher.embed(4)
        await batcher.stop()
        return ok, again

    ok, again = asyncio.run(scenario())
    assert ok == [10, 20, 30] and again == 40
    assert calls[:2] == [2, 1] and calls[2:] == [1, 1, 1]


def test_embedding_model_rejects_bad_images(model):
    with pytest.raises(ValueError, match="HxWx3"):
        model.embed([np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        model.embed([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="empty"):
        model.embed([np.zeros((0, 4, 3), np.uint8)])
    with pytest.raises(ValueError, match="unknown architecture"):
        EmbeddingModel("vit_x")


def test_serve_command_opens_the_storage_it_is_given(served, tmp_path):
    """``python -m model_server serve --storage file:///...`` as a process: it reads what another
    process stored there, and pinning needs the architecture."""
    service, ref = served
    root = Path(service.storage.root)  # type: ignore[attr-defined]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = [sys.executable, "-m", "model_server", "serve", "--storage", root.as_uri(), "--device", "cpu"]
    command = [*base, "--host", "127.0.0.1", "--port", str(port), "--cache-dir", str(tmp_path / "cache")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = HttpModelService(f"http://127.0.0.1:{port}", retries=0)
        deadline = time.monotonic() + 120
        while True:
            try:
                health = client.health()
                break
            except api.ModelServiceError:
                assert process.poll() is None and time.monotonic() < deadline, "the service did not start"
                time.sleep(0.2)
        assert health.architecture is None and health.checkpoint_sha256 is None
        assert client.describe("vit_t", ref.checkpoint_key).sha256 == ref.sha256
    finally:
        process.terminate()
        process.wait(timeout=30)
    refused = subprocess.run([*base, "--checkpoint", str(tmp_path / "x.pth")], capture_output=True, text=True)
    assert refused.returncode == 2 and "--checkpoint needs --model" in refused.stderr
