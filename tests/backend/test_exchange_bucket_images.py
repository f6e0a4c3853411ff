"""Images imported from a bucket prefix as a job, against moto's S3 server on 127.0.0.1: read through
the storage interface, stored as uploads are (deduplicated by content), each refused object reported
with why, other prefixes and non-image names left alone; only sources the operator named."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from backend.core.config import Settings
from backend.tables import Image
from model_server.api import open_storage
from tests.backend.jobs_helpers import GRABCUT_IMAGES
from tests.s3_server import S3Server


@pytest.fixture
def source_url(s3_server: S3Server, data_root: Path) -> str:
    url = s3_server.storage_url(s3_server.create_bucket(), "drop")
    source = open_storage(url)
    photos = [(data_root / "grabcut" / "images" / name).read_bytes() for name in GRABCUT_IMAGES[:2]]
    source.put_bytes(f"batch1/{GRABCUT_IMAGES[0]}", photos[0])
    source.put_bytes(f"batch1/sub/{GRABCUT_IMAGES[1]}", photos[1])
    source.put_bytes("batch1/again/copy.jpg", photos[0])  # the same bytes under another name
    source.put_bytes("batch1/fake.jpg", b"not an image")
    source.put_bytes("batch1/big.png", b"\x89PNG" + b"0" * 3_000_000)
    source.put_bytes("batch1/notes.txt", b"ignored: not an image name")
    source.put_bytes("batch2/other.jpg", photos[1])  # another prefix
    return url


@pytest.fixture
def settings(settings: Settings, source_url: str) -> Settings:
    settings.import_sources = {"incoming": source_url}
    settings.max_upload_bytes = 2_000_000
    return settings


def _run(client, project, headers, body):
    started = client.post(f"/api/projects/{project.id}/images/from-bucket", json=body, headers=headers)
    assert started.status_code == 202, started.text
    return client.get(f"/api/jobs/{started.json()['id']}", headers=headers).json()


def test_images_from_a_bucket_prefix(client, db, project, manager_headers, eager):
    job = _run(client, project, manager_headers, {"source": "incoming", "prefix": "batch1/"})
    assert job["status"] == "succeeded" and job["progress"] == 1.0, job
    result = job["result"]
    assert (result["objects"], result["ignored"], result["stored"], result["duplicates"]) == (5, 1, 2, 1)
    reasons = {r["key"]: r["reason"] for r in result["refused"]}
    assert reasons.keys() == {"batch1/fake.jpg", "batch1/big.png"}
    assert "2000000" in reasons["batch1/big.png"] and "not a supported image" in reasons["batch1/fake.jpg"]
    db.expire_all()
    names = sorted(i.file_name for i in db.scalars(select(Image).where(Image.project_id == project.id)))
    assert names == sorted(GRABCUT_IMAGES[:2])

    again = _run(client, project, manager_headers, {"source": "incoming", "prefix": "batch1/sub/"})
    assert (again["result"]["stored"], again["result"]["duplicates"]) == (0, 1)


def test_only_configured_sources_and_valid_prefixes(client, project, manager_headers):
    url = f"/api/projects/{project.id}/images/from-bucket"
    unknown = client.post(url, json={"source": "s3://elsewhere/x"}, headers=manager_headers)
    assert unknown.status_code == 422 and "incoming" in unknown.json()["detail"]
    for body in ({"source": "incoming", "prefix": "../x"}, {"source": "incoming", "prefix": "a//b"}, {}):
        assert client.post(url, json=body, headers=manager_headers).status_code == 422, body
