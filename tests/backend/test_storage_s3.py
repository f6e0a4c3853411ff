"""The product on S3 storage (moto's real server on 127.0.0.1): uploads, files, thumbnails, exports and
deletes go through the bucket, and the data home holds none of it.

With presigned URLs the API answers file requests with a 307 to the store; with ``presign=false``
(a store the browser cannot reach) it streams the object itself.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx
import pytest
from PIL import Image as PILImage

from backend.core.config import Settings
from backend.storage import storage_for
from tests.s3_server import S3Server


@pytest.fixture(params=["presigned", "streamed"])
def settings(request: pytest.FixtureRequest, database_url: str, tmp_path: Path, s3_server: S3Server) -> Settings:
    url = s3_server.storage_url(s3_server.create_bucket(), "engine")
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        storage_url=url if request.param == "presigned" else url + "&presign=false",
        secret_key="test-secret-key-" + "x" * 32,
        bcrypt_rounds=4,
        frontend_dist=tmp_path / "no-frontend",
    )


def _png() -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


def _fetch(client, url: str, headers: dict[str, str], settings: Settings) -> httpx.Response:
    """GET through the API; a redirect is followed to the store without the API's token."""
    response = client.get(url, headers=headers, follow_redirects=False)
    presigned = "presign=false" not in (settings.storage_url or "")
    assert response.status_code == (307 if presigned else 200), response.text
    return httpx.get(response.headers["location"]) if presigned else response


def test_images_thumbnails_exports_and_deletes_go_through_the_bucket(
    client, project, manager_headers, image_bytes, settings
):
    files = [("files", ("photo.jpg", image_bytes, "image/jpeg")), ("files", ("green.png", _png(), "image/png"))]
    response = client.post(f"/api/projects/{project.id}/images", files=files, headers=manager_headers)
    assert response.status_code == 201, response.text
    photo, green = response.json()["images"]
    storage = storage_for(settings)
    assert len(list(storage.list("images/"))) == 2

    file = _fetch(client, f"/api/images/{photo['id']}/file", manager_headers, settings)
    assert file.content == image_bytes and file.headers["content-type"] == "image/jpeg"
    thumb = _fetch(client, f"/api/images/{green['id']}/thumbnail", manager_headers, settings)
    assert PILImage.open(io.BytesIO(thumb.content)).size == (64, 48)
    assert len(list(storage.list("thumbnails/"))) == 1

    export = client.get(f"/api/projects/{project.id}/export?format=coco&include_images=true", headers=manager_headers)
    assert export.status_code == 200, export.text
    with tarfile.open(fileobj=io.BytesIO(export.content)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert image_bytes in members.values()

    assert client.delete(f"/api/images/{green['id']}", headers=manager_headers).status_code == 204
    assert len(list(storage.list("images/"))) == 1 and list(storage.list("thumbnails/")) == []
    # Nothing of the product's data in the data home: only the (consumed) scratch folder.
    local = [p for p in settings.data_dir.rglob("*") if p.is_file() and p.name not in ("dataengine.db", "secret_key")]
    assert local == []
