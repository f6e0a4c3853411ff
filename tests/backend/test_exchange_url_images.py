"""Images imported from URLs as a job, against a server on 127.0.0.1 started by the test: stored as
uploads are (deduplicated by content), each URL that fails reported with why, progress to the end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from backend.tables import Image
from tests.backend.jobs_helpers import GRABCUT_IMAGES


@pytest.fixture
def server(data_root) -> Iterator[str]:
    files = {f"/photos/{name}": (data_root / "grabcut" / "images" / name).read_bytes() for name in GRABCUT_IMAGES[:2]}
    files["/again/copy.jpg"] = files[f"/photos/{GRABCUT_IMAGES[0]}"]  # the same bytes elsewhere
    files["/notes.txt"] = b"not an image"
    files["/big.jpg"] = b"\xff\xd8" + b"0" * 3_000_000

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_images_from_urls(client, db, project, manager_headers, server, settings, eager):
    settings.max_upload_bytes = 2_000_000
    urls = [f"{server}/photos/{n}" for n in GRABCUT_IMAGES[:2]] + [
        f"{server}/again/copy.jpg",
        f"{server}/missing.jpg",
        f"{server}/notes.txt",
        f"{server}/big.jpg",
        "http://127.0.0.1:9/closed.jpg",
    ]
    started = client.post(f"/api/projects/{project.id}/images/from-urls", json={"urls": urls}, headers=manager_headers)
    assert started.status_code == 202, started.text
    job = client.get(f"/api/jobs/{started.json()['id']}", headers=manager_headers).json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0, job
    result = job["result"]
    assert (result["urls"], result["stored"], result["duplicates"]) == (7, 2, 1)
    reasons = {r["url"].rsplit("/", 1)[-1]: r["reason"] for r in result["refused"]}
    assert reasons.keys() == {"missing.jpg", "notes.txt", "big.jpg", "closed.jpg"}
    assert reasons["missing.jpg"] == "HTTP 404" and "2000000" in reasons["big.jpg"]
    assert "ConnectError" in reasons["closed.jpg"]
    db.expire_all()
    names = sorted(i.file_name for i in db.scalars(select(Image).where(Image.project_id == project.id)))
    assert names == sorted(GRABCUT_IMAGES[:2])
    again = client.post(
        f"/api/projects/{project.id}/images/from-urls", json={"urls": urls[:2]}, headers=manager_headers
    )
    assert client.get(f"/api/jobs/{again.json()['id']}", headers=manager_headers).json()["result"]["duplicates"] == 2


def test_url_lists_are_bounded(client, project, manager_headers):
    url = f"/api/projects/{project.id}/images/from-urls"
    for body in ({"urls": []}, {"urls": ["ftp://127.0.0.1/a.jpg"]}, {"urls": ["not a url"]}, {"urls": "http://x"}):
        assert client.post(url, json=body, headers=manager_headers).status_code == 422, body
