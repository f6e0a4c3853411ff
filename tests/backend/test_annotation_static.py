"""Serving the built frontend: files, SPA fallback, API 404s kept as JSON, and the cross-origin
isolation headers (COOP/COEP) on every response, API included."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app

ISOLATION = {"cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp"}


@pytest.fixture
def dist(tmp_path):
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "ort").mkdir()
    (root / "index.html").write_text("<!doctype html><title>app</title>")
    (root / "assets" / "index-abc.js").write_text("console.log(1)")
    (root / "ort" / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "secret.txt").write_text("outside dist")
    return root


@pytest.fixture
def web_client(settings, dist):
    settings.frontend_dist = dist
    app = create_app(settings)
    with TestClient(app) as client:
        yield client
    app.state.engine.dispose()


def test_files_fallback_and_headers(web_client):
    index = web_client.get("/")
    assert index.status_code == 200 and "<title>app</title>" in index.text
    assert index.headers["cache-control"] == "no-cache"
    spa = web_client.get("/annotate/3/17")
    assert spa.status_code == 200 and spa.text == index.text
    asset = web_client.get("/assets/index-abc.js")
    assert asset.text == "console.log(1)" and "immutable" in asset.headers["cache-control"]
    wasm = web_client.get("/ort/ort-wasm-simd-threaded.wasm")
    assert wasm.headers["content-type"] == "application/wasm"
    for response in (index, spa, asset, wasm, web_client.get("/api/users/me")):
        for name, value in ISOLATION.items():
            assert response.headers[name] == value, (response.url, name)


def test_api_paths_stay_json_404_and_no_escape_from_dist(web_client):
    missing = web_client.get("/api/no-such-route")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no API route /api/no-such-route"
    escape = web_client.get("/..%2Fsecret.txt")
    assert "outside dist" not in escape.text


def test_without_a_build_the_page_says_how_to_build(client):
    response = client.get("/")
    assert response.status_code == 404
    assert "npm run build" in response.json()["detail"]
