"""The review page in headless Chromium: a reviewer skips one sampled auto mask, accepts one, rejects
one and fixes one with the eraser (Enter submits); the server's review summary and the stored fixed
mask follow, each mask is posted once, and the skipped mask comes back after "start over".

Seeds its own project (the live server's photograph uploaded again) and stores four box-shaped auto
masks, all sampled for review (fraction 1), the way the auto task does.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from backend.core.db import make_engine, make_session_factory
from backend.tables import Image, Mask, MaskReview
from tests.backend.stage3_helpers import add_auto_masks, box_mask, decode
from tests.browser.conftest import IMAGE_NAME
from tests.browser.page_helpers import DECODER_TIMEOUT_MS

TIMEOUT = 60_000
# (y0, x0, y1, x1) of the four auto masks, original pixels; the last one is fixed with the eraser.
BOXES = [(10, 10, 60, 60), (10, 100, 80, 180), (100, 10, 150, 90), (120, 120, 200, 320)]


def _seed(live_server, data_root) -> tuple[int, int, list[int], tuple[int, int]]:
    with live_server.api() as http:
        project = http.post("/api/projects", json={"name": "Review page"}).raise_for_status().json()
        image_file = data_root / "grabcut" / "images" / IMAGE_NAME
        image = (
            http.post(
                f"/api/projects/{project['id']}/images",
                files=[("files", (IMAGE_NAME, image_file.read_bytes(), "image/jpeg"))],
            )
            .raise_for_status()
            .json()["images"][0]
        )
    engine = make_engine(live_server.settings.db_url)
    with make_session_factory(engine)() as db:
        row = db.get(Image, image["id"])
        size = (row.height, row.width)
        stored = add_auto_masks(db, row, [box_mask(*size, *box) for box in BOXES], fraction=1.0)
        assert stored.pending_review == len(BOXES)
        ids = list(db.scalars(select(Mask.id).where(Mask.image_id == row.id).order_by(Mask.id)))
    engine.dispose()
    return project["id"], image["id"], ids, size


def _shown(page, mask_id: int) -> None:
    page.wait_for_selector(f"[data-testid='review-item'][data-mask-id='{mask_id}']", timeout=TIMEOUT)
    page.wait_for_function("() => document.getElementById('app').dataset.reviewMode === 'review'", timeout=TIMEOUT)


def _client_point(page, size: tuple[int, int], x: float, y: float) -> tuple[float, float]:
    rect = page.locator("canvas#ui").bounding_box()
    return rect["x"] + (x + 0.5) / size[1] * rect["width"], rect["y"] + (y + 0.5) / size[0] * rect["height"]


def test_review_page_accepts_rejects_fixes_and_skips(live_server, data_root, page):
    project_id, image_id, ids, size = _seed(live_server, data_root)
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" and r.url.endswith("/review") else None)
    page.goto(f"{live_server.url}/login")
    page.evaluate("token => localStorage.setItem('dataengine.token', token)", live_server.token)
    page.goto(f"{live_server.url}/review/{project_id}")

    _shown(page, ids[0])
    scores = page.text_content("[data-testid='review-scores']")
    assert "predicted IoU 0.900" in scores and "stability 0.960" in scores
    assert "4 pending" in page.text_content("[data-testid='review-item']")

    page.keyboard.press("s")  # skip the first: it stays pending
    _shown(page, ids[1])
    page.keyboard.press("a")
    _shown(page, ids[2])
    page.click("[data-action='reject']")
    _shown(page, ids[3])

    page.keyboard.press("f")
    page.wait_for_selector("[data-tool='eraser']", timeout=TIMEOUT)
    page.keyboard.press("e")
    assert page.get_attribute("[data-tool='eraser']", "aria-pressed") == "true"
    y0, x0, y1, x1 = BOXES[3]
    row = (y0 + y1) / 2
    page.mouse.move(*_client_point(page, size, x0 - 10, row))
    page.mouse.down()
    for x in np.linspace(x0 - 10, x1 + 10, 12):
        page.mouse.move(*_client_point(page, size, float(x), row))
    page.mouse.up()
    page.keyboard.press("Enter")

    page.wait_for_selector("[data-testid='review-done']", timeout=TIMEOUT)
    assert "skipped" in page.text_content("[data-testid='review-done']")
    page.wait_for_selector("[data-testid='review-summary'][data-reviewed='3']", timeout=TIMEOUT)
    assert page.text_content("[data-testid='review-error']") == ""
    assert sorted(posted) == sorted(f"{live_server.url}/api/masks/{i}/review" for i in ids[1:])  # each once

    with live_server.api() as http:
        summary = http.get(f"/api/projects/{project_id}/review/summary").raise_for_status().json()
    assert (summary["accepted"], summary["rejected"], summary["fixed"], summary["pending"]) == (1, 1, 1, 1)

    engine = make_engine(live_server.settings.db_url)
    with make_session_factory(engine)() as db:
        review = db.scalar(select(MaskReview).where(MaskReview.mask_id == ids[3]))
        fixed = decode(db.get(Mask, review.fixed_mask_id).rle).astype(bool)
        review_iou = review.iou
    engine.dispose()
    original = box_mask(*size, *BOXES[3])
    assert fixed.shape == original.shape
    assert not (fixed & ~original).any()  # the eraser only removes
    band = ~fixed[:, x0:x1] & original[:, x0:x1]
    erased_rows = np.nonzero(band.all(axis=1))[0]
    assert erased_rows.size >= 3 and abs(erased_rows.mean() - row) < 2  # a band across the whole box at the stroke
    assert fixed[y0 : y0 + 5, x0:x1].all() and fixed[y1 - 5 : y1, x0:x1].all()  # far from the stroke: untouched
    iou = fixed.sum() / original.sum()
    assert abs(review_iou - iou) < 1e-6
    assert summary["above_threshold"] == 1 + int(iou > summary["iou_threshold"])  # accepted counts as IoU 1
    assert summary["share_above_threshold"] == summary["above_threshold"] / 3
    assert f"{summary['above_threshold']}/3" in page.text_content("[data-testid='review-summary']")

    page.click("[data-action='start-over']")  # the skipped mask is still pending
    _shown(page, ids[0])


OVERLAY_PIXELS = """() => {
    const c = document.getElementById('overlay');
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i]) n++; return n; }"""


def test_review_page_reports_a_conflict_and_refines_from_the_mask_by_click(live_server, data_root, page):
    project_id, _, ids, size = _seed(live_server, data_root)
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" and r.url.endswith("/review") else None)
    page.goto(f"{live_server.url}/login")
    page.evaluate("token => localStorage.setItem('dataengine.token', token)", live_server.token)
    page.goto(f"{live_server.url}/review/{project_id}")
    _shown(page, ids[0])

    with live_server.api() as http:  # another reviewer decides first
        http.post(f"/api/masks/{ids[0]}/review", json={"decision": "reject"}).raise_for_status()
    page.keyboard.press("a")
    _shown(page, ids[1])
    error = page.text_content("[data-testid='review-error']")
    assert f"mask #{ids[0]} was not recorded" in error

    page.keyboard.press("f")
    page.wait_for_selector("[data-tool='points'][aria-pressed='true']", timeout=TIMEOUT)
    before = page.evaluate(OVERLAY_PIXELS)
    assert before > 0  # the auto mask, ready to edit
    # The first fix loads the decoder (graphs, sessions, a warm-up run): slow on a loaded machine.
    page.wait_for_selector("[data-testid=decoder-status][data-ready=true]", timeout=DECODER_TIMEOUT_MS)
    y0, x0, y1, x1 = BOXES[1]
    page.mouse.click(*_client_point(page, size, (x0 + x1) / 2, (y0 + y1) / 2))
    page.wait_for_function(f"() => ({OVERLAY_PIXELS})() !== {before}", timeout=TIMEOUT)  # decoded from the mask
    assert page.get_attribute("[data-testid='decoder-status']", "data-ready") == "true"
    page.keyboard.press("Control+z")
    page.wait_for_function(f"() => ({OVERLAY_PIXELS})() === {before}", timeout=TIMEOUT)
    page.keyboard.press("Escape")  # leaves fix mode, nothing sent
    page.wait_for_function("() => document.getElementById('app').dataset.reviewMode === 'review'", timeout=TIMEOUT)
    assert page.evaluate(OVERLAY_PIXELS) == 0
    assert posted == [f"{live_server.url}/api/masks/{ids[0]}/review"]
    with live_server.api() as http:
        summary = http.get(f"/api/projects/{project_id}/review/summary").raise_for_status().json()
    assert (summary["rejected"], summary["reviewed"], summary["pending"]) == (1, 1, len(BOXES) - 1)
