"""Helpers shared by the jobs/embeddings/worker tests (H4)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

GRABCUT_IMAGES = ("106024.jpg", "124080.jpg", "153077.jpg", "153093.jpg", "181079.jpg")


def upload(client: TestClient, headers: dict[str, str], project_id: int, data_root: Path, count: int) -> list[int]:
    """Upload the first `count` grabcut images through the API; return their ids."""
    files = [
        ("files", (name, (data_root / "grabcut" / "images" / name).read_bytes(), "image/jpeg"))
        for name in GRABCUT_IMAGES[:count]
    ]
    response = client.post(f"/api/projects/{project_id}/images", files=files, headers=headers)
    assert response.status_code == 201, response.text
    return [image["id"] for image in response.json()["images"]]
