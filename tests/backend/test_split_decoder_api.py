"""The split browser decoder served by the registry: per-image + per-click graphs next to the one graph.

The untrained vit_t default version (created on first use) carries all three graphs; a version
stored before the split existed (no split artifacts) still serves its one graph, with null split
URLs so the annotate page falls back to it. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from backend.tables import ModelVersion
from model_server.export.contract import CLICK_INPUTS, CLICK_OUTPUTS, IMAGE_OUTPUTS, MAX_IR_VERSION, onnx_prompt


def _session(content: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(content, providers=["CPUExecutionProvider"])


def test_model_serves_split_graphs_with_etag_and_same_masks_as_one_graph(client, project, manager_headers):
    model = client.get(f"/api/projects/{project.id}/model", headers=manager_headers).json()
    assert model["image_graph_url"] == f"/api/model-versions/{model['id']}/decoder.image.onnx"
    assert model["click_graph_url"] == f"/api/model-versions/{model['id']}/decoder.click.onnx"

    served = {}
    for name in ("decoder_url", "image_graph_url", "click_graph_url"):
        response = client.get(model[name], headers=manager_headers)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "private, max-age=31536000, immutable"
        graph = onnx.load_from_string(response.content)
        onnx.checker.check_model(graph)
        assert graph.ir_version <= MAX_IR_VERSION  # onnxruntime-web 1.30 refuses IR 14
        cached = client.get(model[name], headers={**manager_headers, "If-None-Match": response.headers["etag"]})
        assert cached.status_code == 304
        served[name] = (response.headers["etag"], graph, response.content)
    assert len({etag for etag, _, _ in served.values()}) == 3  # one ETag per file, not per version
    assert [o.name for o in served["image_graph_url"][1].graph.output] == IMAGE_OUTPUTS
    assert [i.name for i in served["click_graph_url"][1].graph.input] == CLICK_INPUTS
    assert [o.name for o in served["click_graph_url"][1].graph.output] == CLICK_OUTPUTS

    # The pair computes what the one graph computes (a click with a previous mask as input).
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    coords, labels = onnx_prompt(np.array([[300.0, 420.0], [610.0, 200.0]]), np.array([1, 0]))
    prompt = {
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": rng.standard_normal((1, 1, 256, 256)).astype(np.float32),
        "has_mask_input": np.ones(1, np.float32),
    }
    one = _session(served["decoder_url"][2]).run(None, {"image_embeddings": embedding, **prompt})
    image_part = _session(served["image_graph_url"][2]).run(None, {"image_embeddings": embedding})
    split = _session(served["click_graph_url"][2]).run(None, {**dict(zip(IMAGE_OUTPUTS, image_part)), **prompt})
    for expected, got in zip(one, split):
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_version_without_split_graphs_falls_back_to_one_graph(client, db, project, manager_headers, make_user, login):
    model = client.get(f"/api/projects/{project.id}/model", headers=manager_headers).json()
    version = db.get(ModelVersion, model["id"])
    version.artifacts = {
        k: v for k, v in version.artifacts.items() if not k.startswith(("decoder_image", "decoder_click"))
    }
    db.commit()

    legacy = client.get(f"/api/projects/{project.id}/model", headers=manager_headers).json()
    assert legacy["image_graph_url"] is None and legacy["click_graph_url"] is None
    assert client.get(legacy["decoder_url"], headers=manager_headers).status_code == 200
    for name in ("decoder.image.onnx", "decoder.click.onnx"):
        response = client.get(f"/api/model-versions/{model['id']}/{name}", headers=manager_headers)
        assert response.status_code == 404 and name in response.json()["detail"]
        assert client.get(f"/api/model-versions/999999/{name}", headers=manager_headers).status_code == 404
        assert client.get(f"/api/model-versions/{model['id']}/{name}").status_code == 401
