"""The annotate session across images in real headless Chromium: ten *Done, next* in a row, each
image's mask saved to that image, the decoder graphs fetched once, each embedding fetched once (the
next image is prefetched while the current one is worked on), and one decoder worker for the whole
session (none leaked per image).

Its own project of eleven grabcut photographs (untrained vit_t: the masks are not objects, so each
image gets a click, to run its decoder, and a brush stroke, so that its mask is never empty).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.browser.page_helpers import DECODER_TIMEOUT_MS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROUNDS = 10


def _project_of(live_server, data_root: Path, count: int) -> tuple[int, list[int]]:
    names = sorted(p.name for p in (data_root / "grabcut" / "images").glob("*.jpg"))[:count]
    with live_server.api() as api:
        project = api.post("/api/projects", json={"name": "Image switch"}).raise_for_status().json()
        files = [("files", (n, (data_root / "grabcut" / "images" / n).read_bytes(), "image/jpeg")) for n in names]
        images = api.post(f"/api/projects/{project['id']}/images", files=files).raise_for_status().json()["images"]
    return project["id"], [i["id"] for i in images]


def _wait_ready(page, image_id: int) -> None:
    page.wait_for_selector(
        f"[data-testid=decoder-status][data-ready=true][data-image-id='{image_id}']", timeout=DECODER_TIMEOUT_MS
    )


def _decoder_workers(page) -> int:
    return sum("decoder.worker" in w.url for w in page.workers)


def test_ten_done_next_in_a_row(page, live_server, data_root):
    project_id, image_ids = _project_of(live_server, data_root, ROUNDS + 1)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    log_in(page, live_server.url, "admin", "admin password 1")
    page.goto(f"{live_server.url}/annotate/{project_id}")

    opened: list[int] = []
    workers = 0
    for _ in range(ROUNDS):
        page.wait_for_url(re.compile(rf".*/annotate/{project_id}/\d+$"))
        image_id = int(page.url.rsplit("/", 1)[1])
        opened.append(image_id)
        _wait_ready(page, image_id)
        box = page.locator("#ui").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.click(cx, cy)
        page.wait_for_selector(".candidates button")
        page.keyboard.press("b")
        page.mouse.move(cx - 20, cy)
        page.mouse.down()
        page.mouse.move(cx + 20, cy, steps=4)
        page.mouse.up()
        page.keyboard.press("v")
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelector('.save-status')?.textContent === 'saved'", timeout=60_000)
        assert _decoder_workers(page) == 1, page.workers
        workers = workers or len(page.workers)  # onnxruntime's wasm threads are workers too
        assert len(page.workers) == workers, page.workers
        page.click("text=Done, next")
        page.wait_for_function(f"!location.pathname.endsWith('/{image_id}')", timeout=60_000)
    last = int(page.url.rsplit("/", 1)[1])
    _wait_ready(page, last)

    assert opened == image_ids[:ROUNDS] and last == image_ids[ROUNDS]  # claim next, in upload order
    assert _decoder_workers(page) == 1 and len(page.workers) == workers  # one decoder for the session
    graphs = Counter(u.split("?")[0] for u in requests if ".onnx" in u)
    assert graphs and all(n == 1 for n in graphs.values()), graphs
    embeddings = Counter(re.sub(r"\?.*", "", u) for u in requests if "/embedding" in u)
    assert all(n == 1 for n in embeddings.values()), embeddings
    assert len(embeddings) >= ROUNDS + 1  # ... every image's was (the eleventh prefetched too)
    with live_server.api() as api:
        for image_id in image_ids:
            masks = api.get(f"/api/images/{image_id}/masks").raise_for_status().json()
            assert len(masks) == (1 if image_id in opened else 0), (image_id, masks)
            assert all(m["image_id"] == image_id for m in masks)
            status = api.get(f"/api/images/{image_id}").raise_for_status().json()["status"]
            assert (status == "done") == (image_id in opened)
    assert not errors, errors
