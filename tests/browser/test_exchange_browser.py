"""Export, import and webhooks from the pages, in headless Chromium: the Images page exports COCO
polygons (the job runs eagerly; the archive downloads with the session's token) and imports a COCO
file (the report shown) and a bad one (the server's problems listed); the Settings page adds a
webhook for a receiver on 127.0.0.1 and sends it a test event."""

from __future__ import annotations

import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.worker import celery_app
from tests.browser.conftest import IMAGE_NAME
from tests.browser.page_helpers import log_in
from tests.live_app import ADMIN

pytestmark = [pytest.mark.browser]


@pytest.fixture
def eager_tasks(live_server) -> Iterator[None]:
    celery_app.configure(live_server.settings, eager=True)
    yield
    celery_app.configure(live_server.settings, eager=False)


@pytest.fixture
def project(live_server, data_root) -> int:
    with live_server.api() as http:
        project = http.post("/api/projects", json={"name": "exchange in the browser"}).json()
        image = (data_root / "grabcut" / "images" / IMAGE_NAME).read_bytes()
        uploaded = http.post(
            f"/api/projects/{project['id']}/images", files=[("files", (IMAGE_NAME, image, "image/jpeg"))]
        )
        assert uploaded.status_code == 201, uploaded.text
    return project["id"]


def _coco(polygon: list[float]) -> bytes:
    return json.dumps(
        {
            "images": [{"id": 1, "file_name": IMAGE_NAME}],
            "annotations": [{"id": 1, "image_id": 1, "segmentation": [polygon]}],
        }
    ).encode()


def test_export_and_import_from_the_images_page(live_server, page, project, eager_tasks, tmp_path):
    log_in(page, live_server.url, *ADMIN)
    page.goto(f"{live_server.url}/projects/{project}/images")
    panel = page.locator("section.exchange")
    good = tmp_path / "instances.json"
    good.write_bytes(_coco([10, 10, 200, 10, 200, 150, 10, 150]))
    panel.locator("select[data-exchange=import-format]").select_option("auto")
    panel.locator("input[type=file]").set_input_files(str(good))
    panel.get_by_role("button", name="Import", exact=True).click()
    status = panel.locator("[data-exchange=status]")
    status.filter(has_text="coco: 1 masks imported").wait_for()
    assert "instances.json: 1 masks" in panel.inner_text()

    bad = tmp_path / "bad.json"
    bad.write_bytes(_coco([10, 10, 5000, 10, 200, 150]))
    panel.locator("input[type=file]").set_input_files(str(bad))
    panel.get_by_role("button", name="Import", exact=True).click()
    status.filter(has_text="nothing imported").wait_for()
    assert "must lie inside the" in panel.locator("ul.error").inner_text()

    panel.locator("select[data-exchange=export-format]").select_option("coco_polygons")
    with page.expect_download() as download:
        panel.locator("button", has_text="Export").click()
    archive = download.value.path()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        instances = json.load(tar.extractfile("annotations/instances.json"))
    assert "fidelity.json" in names and instances["annotations"][0]["polygon_iou"] > 0.99
    status.filter(has_text="export ready").wait_for()


def test_webhook_test_event_from_the_settings_page(live_server, page, project, eager_tasks):
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        log_in(page, live_server.url, *ADMIN)
        page.goto(f"{live_server.url}/projects/{project}/settings")
        page.fill("section >> input[type=url]", f"http://127.0.0.1:{server.server_address[1]}/hook")
        page.click("button:has-text('Add webhook')")
        page.locator("[data-webhook-test]").first.click()
        page.locator("text=test event queued").wait_for()
        assert len(received) == 1 and json.loads(received[0])["event"] == "test"
        page.locator("button:has-text('Deliveries')").first.click()
        page.locator("li", has_text="test: succeeded after 1 attempts").wait_for()
    finally:
        server.shutdown()


def test_images_from_urls_on_the_images_page(live_server, page, project, eager_tasks, data_root):
    photo = (data_root / "grabcut" / "images" / "124080.jpg").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/124080.jpg"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(photo) if found else 0))
            self.end_headers()
            self.wfile.write(photo if found else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        log_in(page, live_server.url, *ADMIN)
        page.goto(f"{live_server.url}/projects/{project}/images")
        panel = page.locator("section.exchange")
        panel.locator("textarea[data-exchange=urls]").fill(f"{base}/124080.jpg\n{base}/gone.jpg")
        panel.locator("button", has_text="Import images from URLs").click()
        panel.locator("[data-exchange=status]").filter(has_text="URL import succeeded").wait_for()
        assert "gone.jpg: HTTP 404" in panel.locator("ul.error").inner_text()
        with live_server.api() as http:
            names = [i["file_name"] for i in http.get(f"/api/projects/{project}/images").json()]
        assert "124080.jpg" in names
    finally:
        server.shutdown()
