"""The embedding service: health, micro-batching of concurrent requests, parity with the predictor."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from model_server import api
from model_server.predictor import Predictor
from model_server.service.embedding_model import EmbeddingModel
from model_server.service.server import MicroBatcher, create_service


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    return EmbeddingModel("vit_t")  # seeded untrained weights


@pytest.fixture(scope="module")
def images(data_root) -> list[np.ndarray]:
    names = ["106024.jpg", "124080.jpg", "153077.jpg"]
    return [np.asarray(Image.open(data_root / "grabcut" / "images" / n).convert("RGB")) for n in names]


def test_health_names_the_model(model):
    with TestClient(create_service("vit_t", model=model, max_batch=4, max_wait_ms=5)) as client:
        health = client.get("/v1/health").json()
    assert health == {
        "status": "ok",
        "architecture": "vit_t",
        "device": "cpu",
        "dtype": "float32",
        "checkpoint_sha256": None,
        "queue_depth": 0,
        "max_batch": 4,
        "max_wait_ms": 5.0,
    }


def test_concurrent_requests_share_one_batch_and_match_the_predictor(model, images):
    app = create_service("vit_t", model=model, max_batch=len(images), max_wait_ms=5000)
    responses: list = [None] * len(images)
    with TestClient(app) as client:

        def send(i: int) -> None:
            body, headers = api.encode_image_request(images[i])
            responses[i] = client.post("/v1/embed", content=body, headers=headers)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(images))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert app.state.batcher.batch_sizes == [len(images)]  # one forward for all three

    predictor = Predictor(model.sam)
    for image, response in zip(images, responses):
        assert response.status_code == 200, response.text
        result = api.decode_embedding_response(response.content, response.headers)
        predictor.set_image(image)
        assert result.original_size == predictor.original_size == image.shape[:2]
        assert result.input_size == predictor.input_size
        reference = predictor.embedding.numpy()
        assert result.embedding.dtype == np.float16 and result.embedding.shape == (1, 256, 64, 64)
        # float16 rounding only: half a unit in the last place of float16, relative to the value.
        np.testing.assert_allclose(result.embedding.astype(np.float32), reference, rtol=2e-3, atol=2e-3)


def test_bad_requests_are_4xx(model):
    with TestClient(create_service("vit_t", model=model)) as client:
        missing = client.post("/v1/embed", content=b"\x00" * 12)
        assert missing.status_code == 400 and "X-Image-Size" in missing.json()["detail"]
        short = client.post("/v1/embed", content=b"\x00" * 11, headers={"X-Image-Size": "2,2"})
        assert short.status_code == 400 and "expected 12" in short.json()["detail"]
        bad = client.post("/v1/embed", content=b"", headers={"X-Image-Size": "a,b"})
        assert bad.status_code == 400
        image = {"X-Image-Size": "2,2"}
        for headers, status, detail in [
            ({}, 400, "X-Image-Size"),
            ({**image, "X-Generator-Params": "{points"}, 400, "not JSON"),
            ({**image, "X-Generator-Params": "[1]"}, 400, "JSON object"),
            ({**image, "X-Generator-Params": '{"pred_iou_thresh": 2}'}, 422, "pred_iou_thresh"),
        ]:
            answer = client.post("/v1/automatic-masks", content=b"\x00" * 12, headers=headers)
            assert answer.status_code == status and detail in answer.json()["detail"], answer.text


def test_batcher_gathers_up_to_max_batch_and_survives_a_failing_batch():
    import asyncio

    calls: list[int] = []

    def embed(batch):
        calls.append(len(batch))
        if any(int(x) < 0 for x in batch):
            raise ValueError("bad image")
        return [api.EmbeddingResult(np.zeros((1, 256, 64, 64), np.float16), (1, 1), (1024, 1024))] * len(batch)

    async def scenario():
        batcher = MicroBatcher(embed, max_batch=2, max_wait_ms=200)
        await batcher.start()
        ok = await asyncio.gather(*(batcher.embed(i) for i in (1, 2, 3)))
        with pytest.raises(ValueError):
            await batcher.embed(-1)
        again = await batcher.embed(4)
        await batcher.stop()
        return ok, again

    ok, again = asyncio.run(scenario())
    assert len(ok) == 3 and again.original_size == (1, 1)
    assert calls[:2] == [2, 1] and calls[2:] == [1, 1]


def test_embedding_model_rejects_bad_images(model):
    with pytest.raises(ValueError, match="HxWx3"):
        model.embed([np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        model.embed([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="empty"):
        model.embed([np.zeros((0, 4, 3), np.uint8)])
    with pytest.raises(ValueError, match="unknown architecture"):
        EmbeddingModel("vit_x")
