"""Embedding a project (eager Celery: the task runs in the test process) and serving embeddings.

The model is the untrained vit_t the install creates on first use, in process (its weights, decoders
and embeddings computed once per session: `tests.backend.model_memo`); on SQLite and PostgreSQL.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
from sqlalchemy import func, select

from backend.tables import Embedding, ModelOrigin, ModelStatus, ModelVersion, Role
from model_server.service.embedding_file import load_embedding
from model_server.service.wire import decode_int8
from tests.backend.jobs_helpers import upload
from tests.backend.model_memo import memo_models_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("memo_models")


def test_embed_job_embeds_every_image_once_and_is_idempotent(
    client, db, eager, project, manager_headers, data_root, settings
):
    image_ids = upload(client, manager_headers, project.id, data_root, 2)

    response = client.post(f"/api/projects/{project.id}/embed", headers=manager_headers)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    job = client.get(f"/api/jobs/{job_id}", headers=manager_headers).json()
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0
    assert job["result"]["embedded"] == 2 and job["result"]["total"] == 2

    version = db.scalar(select(ModelVersion))
    assert version.origin == "untrained" and version.architecture == "vit_t"
    rows = db.scalars(select(Embedding).order_by(Embedding.image_id)).all()
    assert [r.image_id for r in rows] == image_ids
    assert all(r.model_version_id == version.id for r in rows)
    embedding, original, inner = load_embedding(settings.storage_path / rows[0].storage_key)
    assert embedding.shape == (256, 64, 64) and embedding.dtype == np.float16
    assert max(inner) == 1024 and (rows[0].original_h, rows[0].original_w) == original

    # A second job finds nothing to do and adds no rows.
    again = client.post(f"/api/projects/{project.id}/embed", headers=manager_headers).json()
    assert again["id"] != job_id
    assert client.get(f"/api/jobs/{again['id']}", headers=manager_headers).json()["result"]["embedded"] == 0
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Embedding)) == 2

    listed = client.get(f"/api/projects/{project.id}/jobs", headers=manager_headers).json()
    assert [j["id"] for j in listed] == [again["id"], job_id]


def _embed(client, project_id: int, headers) -> dict:
    response = client.post(f"/api/projects/{project_id}/embed", headers=headers)
    assert response.status_code == 202, response.text
    return client.get(f"/api/jobs/{response.json()['id']}", headers=headers).json()


def test_versions_with_the_same_image_encoder_share_embeddings(
    client, db, eager, project, manager_headers, data_root, memo_models
):
    """A decoder-only version (what a retraining round makes: same image encoder, other weights) is
    given the embeddings its encoder already computed, without asking the model."""
    image_ids = upload(client, manager_headers, project.id, data_root, 2)
    assert client.get(f"/api/projects/{project.id}/model", headers=manager_headers).status_code == 200
    version = db.scalar(select(ModelVersion))
    encoder, version.encoder_sha256 = version.encoder_sha256, None  # as registered before migration 0015
    db.commit()
    assert _embed(client, project.id, manager_headers)["status"] == "succeeded"
    db.refresh(version)
    assert version.encoder_sha256 == encoder and len(encoder) == 64  # asked of the model side again
    assert version.encoder_sha256 != version.sha256  # the encoder's identity, not the checkpoint's
    twin = ModelVersion(
        project_id=project.id,
        parent_id=version.id,
        name="decoder-only",
        architecture=version.architecture,
        origin=ModelOrigin.trained,
        status=ModelStatus.ready,
        sha256="0" * 64,  # no such checkpoint: the model side would refuse to run it
        encoder_sha256=version.encoder_sha256,
        artifacts=dict(version.artifacts),
        metrics={},
    )
    db.add(twin)
    db.flush()
    db.get_one(type(project), project.id).active_model_version_id = twin.id
    db.commit()
    asked = len(memo_models.embed)

    job = _embed(client, project.id, manager_headers)
    assert job["status"] == "succeeded", job
    assert job["result"]["embedded"] == 2 and job["result"]["model_version_id"] == twin.id
    assert len(memo_models.embed) == asked  # the model was not asked
    db.expire_all()
    keys = {
        vid: [
            r.storage_key
            for r in db.scalars(select(Embedding).where(Embedding.model_version_id == vid).order_by(Embedding.image_id))
        ]
        for vid in (version.id, twin.id)
    }
    assert keys[twin.id] == keys[version.id] and len(keys[version.id]) == len(image_ids)
    assert all(key.startswith(f"embeddings/{version.encoder_sha256}/") for key in keys[version.id])
    served = client.get(f"/api/images/{image_ids[0]}/embedding", headers=manager_headers)
    assert served.status_code == 200 and served.headers["x-model-version"] == str(twin.id)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_embed_job_fails_clearly_when_the_model_service_is_down(
    client, db, eager, project, manager_headers, data_root, settings
):
    image_ids = upload(client, manager_headers, project.id, data_root, 2)
    assert client.get(f"/api/projects/{project.id}/model", headers=manager_headers).status_code == 200
    settings.model_server_url = f"http://127.0.0.1:{_unused_port()}"  # nothing listens there

    job = _embed(client, project.id, manager_headers)
    assert job["status"] == "failed", job
    assert settings.model_server_url in job["error"], job["error"]
    assert db.scalar(select(func.count()).select_from(Embedding)) == 0
    response = client.get(f"/api/images/{image_ids[0]}/embedding", headers=manager_headers)
    assert response.status_code == 503 and settings.model_server_url in response.json()["detail"]


def test_embedding_endpoint_binary_headers_etag_and_on_demand(client, db, project, manager_headers, data_root):
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    assert db.scalar(select(func.count()).select_from(Embedding)) == 0

    response = client.get(f"/api/images/{image_id}/embedding", headers=manager_headers)  # computed on demand
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-embedding-shape"] == "1,256,64,64"
    assert response.headers["x-embedding-dtype"] == "float16"
    image = client.get(f"/api/images/{image_id}", headers=manager_headers).json()
    h, w = image["height"], image["width"]
    assert response.headers["x-original-size"] == f"{h},{w}"
    scale = 1024 / max(h, w)
    assert response.headers["x-input-size"] == f"{int(h * scale + 0.5)},{int(w * scale + 0.5)}"
    version_id = int(response.headers["x-model-version"])
    assert version_id == client.get(f"/api/projects/{project.id}/model", headers=manager_headers).json()["id"]
    assert len(response.content) == 256 * 64 * 64 * 2
    values = np.frombuffer(response.content, dtype="<f2")
    assert np.isfinite(values).all() and values.astype(np.float32).std() > 0
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Embedding)) == 1

    etag = response.headers["etag"]
    cached = client.get(f"/api/images/{image_id}/embedding", headers={**manager_headers, "If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    again = client.get(f"/api/images/{image_id}/embedding", headers=manager_headers)
    assert again.content == response.content and again.headers["etag"] == etag


def test_embedding_int8_encoding_immutable_url_and_etag(client, project, manager_headers, data_root):
    """The browser's encoding: per-channel int8 (half the bytes, within a step of each channel's
    scale of the float16 values); a URL naming the model version is immutable, with its own ETag
    per encoding; a stale version is a 409, never another embedding under the same URL."""
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    url = f"/api/images/{image_id}/embedding"
    plain = client.get(url, headers=manager_headers)
    assert plain.headers["cache-control"] == "private, no-cache"
    version = int(plain.headers["x-model-version"])
    params = {"encoding": "int8-per-channel", "model_version": version}

    int8 = client.get(url, headers=manager_headers, params=params)
    assert int8.status_code == 200, int8.text
    assert int8.headers["x-embedding-dtype"] == "int8-per-channel"
    assert int8.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert len(int8.content) == 256 * 4 + 256 * 64 * 64 == len(plain.content) // 2 + 1024
    reference = np.frombuffer(plain.content, dtype="<f2").astype(np.float32).reshape(256, -1)
    scales = np.frombuffer(int8.content, dtype="<f4", count=256)
    decoded = decode_int8(int8.content).reshape(256, -1)
    assert np.allclose(scales, np.abs(reference).max(axis=1) / 127, rtol=1e-6)
    assert (np.abs(decoded - reference) <= scales[:, None] / 2 + 1e-6).all()

    etag = int8.headers["etag"]
    assert etag != plain.headers["etag"] and "int8-per-channel" in etag
    revisit = client.get(url, headers={**manager_headers, "If-None-Match": etag}, params=params)
    assert revisit.status_code == 304 and revisit.headers["cache-control"].endswith("immutable")
    other_encoding = client.get(
        url, headers={**manager_headers, "If-None-Match": etag}, params={"model_version": version}
    )
    assert other_encoding.status_code == 200 and other_encoding.content == plain.content

    stale = client.get(url, headers=manager_headers, params={**params, "model_version": version + 1})
    assert stale.status_code == 409 and str(version) in stale.json()["detail"]
    assert client.get(url, headers=manager_headers, params={"encoding": "int4"}).status_code == 422


def test_embedding_roles_and_unknown_ids(client, project, manager_headers, make_user, login, data_root):
    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    outsider = login(make_user(Role.manager))
    annotator = make_user(Role.annotator)
    added = client.post(f"/api/projects/{project.id}/members", json={"user_id": annotator.id}, headers=manager_headers)
    assert added.status_code == 201, added.text
    assert client.get(f"/api/images/{image_id}/embedding", headers=login(annotator), params={"x": 1}).status_code == 200
    assert client.get(f"/api/images/{image_id}/embedding", headers=outsider).status_code == 404
    assert client.post(f"/api/projects/{project.id}/embed", headers=outsider).status_code == 404
    assert client.post(f"/api/projects/{project.id}/embed", headers=login(annotator)).status_code == 403
    assert client.get("/api/images/999999/embedding", headers=manager_headers).status_code == 404
    assert client.post("/api/projects/999999/embed", headers=manager_headers).status_code == 404
    assert client.get(f"/api/images/{image_id}/embedding").status_code == 401


def test_project_model_says_untrained_and_decoder_is_cached(client, project, manager_headers, make_user, login):
    model = client.get(f"/api/projects/{project.id}/model", headers=manager_headers).json()
    assert model["origin"] == "untrained" and model["architecture"] == "vit_t" and model["status"] == "ready"
    assert "UNTRAINED" in model["notice"] and "dataengine models import" in model["notice"]

    decoder = client.get(model["decoder_url"], headers=manager_headers)
    assert decoder.status_code == 200 and len(decoder.content) > 100_000
    import onnx

    graph = onnx.load_from_string(decoder.content)
    assert [i.name for i in graph.graph.input][:2] == ["image_embeddings", "point_coords"]
    cached = client.get(model["decoder_url"], headers={**manager_headers, "If-None-Match": decoder.headers["etag"]})
    assert cached.status_code == 304
    assert client.get("/api/model-versions/999999/decoder.onnx", headers=manager_headers).status_code == 404
    # The default version is created once, not per request.
    assert client.get(f"/api/projects/{project.id}/model", headers=manager_headers).json()["id"] == model["id"]


def test_first_use_from_concurrent_requests_creates_one_default_version(
    client, db, project, manager_headers, data_root
):
    """The annotate page asks for the model and an embedding at once on a fresh install."""
    from concurrent.futures import ThreadPoolExecutor

    (image_id,) = upload(client, manager_headers, project.id, data_root, 1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        model = pool.submit(client.get, f"/api/projects/{project.id}/model", headers=manager_headers)
        embedding = pool.submit(client.get, f"/api/images/{image_id}/embedding", headers=manager_headers)
        model_response, embedding_response = model.result(), embedding.result()
    assert model_response.status_code == 200, model_response.text
    assert embedding_response.status_code == 200, embedding_response.text
    assert embedding_response.headers["x-model-version"] == str(model_response.json()["id"])
    assert db.scalar(select(func.count()).select_from(ModelVersion)) == 1
