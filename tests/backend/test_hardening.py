"""Hostile requests that used to answer 500 or be taken silently; each is a clear 4xx now.

Found by schema fuzzing and by hand (the hardening issue): ids above 2^63−1 reached the database
(`OverflowError`), a `NaN` in a body made the 422 itself unencodable, a NUL byte in a static path
broke `Path`, wrong types were coerced (`false` → 0, `"240"` → 240), `detail` came in two shapes,
the security headers were missing, and a grid of 256 points with four crop layers was accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.core.config import Settings
from backend.main import create_app
from backend.tables import Project

TOO_BIG = 2**63  # one past SQLite's 64 bits
PG_TOO_BIG = 2**31  # one past PostgreSQL's integer id columns


def _image_id(client: TestClient, project: Project, headers: dict[str, str], image_bytes: bytes) -> int:
    uploaded = client.post(
        f"/api/projects/{project.id}/images", headers=headers, files=[("files", ("a.jpg", image_bytes, "image/jpeg"))]
    )
    assert uploaded.status_code == 201, uploaded.text
    return uploaded.json()["images"][0]["id"]


@pytest.mark.parametrize(
    "template",
    [
        "/api/projects/{big}",
        "/api/images/{big}",
        "/api/jobs/{big}",
        "/api/model-versions/{big}/decoder.onnx",
        "/api/projects/{project}/images?offset={big}",
        "/api/projects/{project}/review/next?after={big}",
    ],
)
@pytest.mark.parametrize("big", [TOO_BIG, PG_TOO_BIG])
def test_ids_beyond_the_id_columns_are_a_422(
    template: str, big: int, client: TestClient, project: Project, manager_headers: dict[str, str]
) -> None:
    response = client.get(template.format(big=big, project=project.id), headers=manager_headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["type"] == "less_than_equal"


def test_ids_beyond_the_id_columns_in_bodies_are_a_422(
    client: TestClient, project: Project, manager_headers: dict[str, str], image_bytes: bytes
) -> None:
    image_id = _image_id(client, project, manager_headers, image_bytes)
    bodies = [
        (f"/api/projects/{project.id}/members", {"user_id": TOO_BIG}),
        (f"/api/projects/{project.id}/members", {"user_id": PG_TOO_BIG}),
        (f"/api/projects/{project.id}/detector/propose", {"detector_version_id": PG_TOO_BIG}),
        (
            f"/api/images/{image_id}/masks",
            {"client_id": "c1", "rle": {"size": [1, 1], "counts": [0, 1]}, "replaces_mask_id": TOO_BIG},
        ),
    ]
    for path, body in bodies:
        response = client.post(path, headers=manager_headers, json=body)
        assert response.status_code == 422, f"{path}: {response.text}"


def test_nan_in_a_body_is_a_422(
    client: TestClient, project: Project, manager_headers: dict[str, str], image_bytes: bytes
) -> None:
    image_id = _image_id(client, project, manager_headers, image_bytes)
    body = '{"client_id": "c1", "rle": {"size": [1, 1], "counts": [0, 1]}, "seconds_spent": NaN}'
    response = client.post(
        f"/api/images/{image_id}/masks", headers={**manager_headers, "Content-Type": "application/json"}, content=body
    )
    assert response.status_code == 422, response.text
    assert "seconds_spent" in response.json()["detail"]


def test_wrong_types_are_refused_not_coerced(
    client: TestClient, project: Project, manager_headers: dict[str, str], image_bytes: bytes
) -> None:
    started = client.post(
        f"/api/projects/{project.id}/auto-annotate", headers=manager_headers, json={"min_mask_region_area": False}
    )
    assert started.status_code == 422 and "min_mask_region_area" in started.json()["detail"]
    image_id = _image_id(client, project, manager_headers, image_bytes)
    saved = client.post(
        f"/api/images/{image_id}/masks",
        headers=manager_headers,
        json={"client_id": "c1", "rle": {"size": ["240", "320"], "counts": [0, 1]}},
    )
    assert saved.status_code == 422, saved.text
    assert saved.json()["errors"][0]["loc"][:3] == ["body", "rle", "size"]  # the schema refused it, not the RLE check


def test_every_error_has_one_shape(client: TestClient, project: Project, manager_headers: dict[str, str]) -> None:
    """`detail` is always a string; `errors` lists a validation failure's problems."""
    missing = client.get("/api/projects/999", headers=manager_headers)
    invalid = client.post(
        f"/api/projects/{project.id}/auto-annotate",
        headers=manager_headers,
        json={"points_per_side": "many", "nonsense": 1},
    )
    anonymous = client.get("/api/projects")
    for response, status in ((missing, 404), (invalid, 422), (anonymous, 401)):
        assert response.status_code == status
        body = response.json()
        assert isinstance(body["detail"], str) and isinstance(body["errors"], list)
    assert {tuple(e["loc"]) for e in invalid.json()["errors"]} == {("body", "points_per_side"), ("body", "nonsense")}


def test_a_grid_that_would_run_for_days_is_refused(
    client: TestClient, project: Project, manager_headers: dict[str, str]
) -> None:
    for params in (
        {"points_per_side": 256},
        {"points_per_side": 64, "crop_n_layers": 2},
        {"points_per_side": 32, "crop_n_layers": 4},
    ):
        response = client.post(f"/api/projects/{project.id}/auto-annotate", headers=manager_headers, json=params)
        assert response.status_code == 422, f"{params}: {response.text}"
    ok = client.post(
        f"/api/projects/{project.id}/auto-annotate",
        headers=manager_headers,
        json={"points_per_side": 32, "crop_n_layers": 2},
    )
    assert ok.status_code == 202, ok.text


@pytest.fixture
def web_client(settings: Settings, tmp_path: Path) -> TestClient:
    dist = tmp_path / "dist"
    (dist / "ort").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>app</title>")
    (dist / "ort" / "a.wasm").write_bytes(b"\0asm")
    settings.frontend_dist = dist
    return TestClient(create_app(settings))


def test_a_nul_byte_in_a_static_path_is_a_404(web_client: TestClient) -> None:
    for path in ("/index.html%00.png", "/ort/a%00b"):
        response = web_client.get(path)
        assert response.status_code == 404, f"{path}: {response.status_code}"
    assert web_client.get("/ort/a.wasm").status_code == 200


def test_every_response_carries_the_security_headers(web_client: TestClient) -> None:
    for response in (web_client.get("/"), web_client.get("/api/projects")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cross-origin-opener-policy"] == "same-origin"


def test_a_nul_character_in_any_string_is_a_422(
    client: TestClient, project: Project, manager_headers: dict[str, str], image_bytes: bytes
) -> None:
    """PostgreSQL text cannot hold NUL: it failed in the driver (500) at login, found by the fuzzer."""
    login = client.post("/api/auth/token", data={"username": "\x00", "password": "whatever"})
    assert login.status_code == 422, login.text
    image_id = _image_id(client, project, manager_headers, image_bytes)
    for path, body in (
        (f"/api/images/{image_id}/masks", {"client_id": "a\x00", "rle": {"size": [1, 1], "counts": [0, 1]}}),
        ("/api/projects", {"name": "x\x00y"}),
    ):
        response = client.post(path, headers=manager_headers, json=body)
        assert response.status_code == 422, f"{path}: {response.text}"
    jobs = client.get(f"/api/projects/{project.id}/jobs", params={"kind": "embed\x00"}, headers=manager_headers)
    assert jobs.status_code == 422
