"""The annotate page's "Show uncovered" overlay in real headless Chromium: with a mask saved through
the API, U tints what no mask covers and the panel's uncovered share is 1 - (union area / image
area); a mask accepted in the page (a brush stroke) lowers it at once; U again hides the tint.

Runs on the live server's shared image; the masks it adds are deleted at the end, and the expected
share is computed from every mask the image holds (other tests may have left theirs).
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pycocotools import mask as mask_util

from tests.browser.page_helpers import client_point, log_in, opaque_pixels

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOLERANCE = 0.01  # the page computes the share on the display grid (nearest-neighbour resampled masks)


def _masks(live_server) -> list[dict]:
    with live_server.api() as api:
        return api.get(f"/api/images/{live_server.image_id}/masks").raise_for_status().json()


def _expected_uncovered(masks: list[dict], height: int, width: int) -> float:
    covered = np.zeros((height, width), bool)
    for mask in masks:
        rle = {"size": mask["rle"]["size"], "counts": mask["rle"]["counts"].encode()}
        covered |= mask_util.decode(rle).astype(bool)
    return 1.0 - covered.sum() / covered.size


def _shown_uncovered(page) -> float:
    return float(page.get_attribute("[data-testid=uncovered]", "data-fraction"))


def test_show_uncovered_overlay(page, live_server):
    with live_server.api() as api:
        info = api.get(f"/api/images/{live_server.image_id}").raise_for_status().json()
    height, width = info["height"], info["width"]
    pixels = np.zeros((height, width), np.uint8)
    pixels[height // 4 : height // 2, width // 4 : width // 2] = 1
    rle = mask_util.encode(np.asfortranarray(pixels))
    with live_server.api() as api:
        posted = (
            api.post(
                f"/api/images/{live_server.image_id}/masks",
                json={
                    "client_id": str(uuid.uuid4()),
                    "rle": {"size": [height, width], "counts": rle["counts"].decode()},
                },
            )
            .raise_for_status()
            .json()
        )
    created = [posted["id"]]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        log_in(page, live_server.url, "admin", "admin password 1")
        page.goto(f"{live_server.url}/annotate/{live_server.project_id}/{live_server.image_id}")
        page.wait_for_selector("[data-testid=uncovered][data-fraction]", timeout=60_000)
        assert page.locator("#coverage").is_hidden()

        before = _expected_uncovered(_masks(live_server), height, width)
        assert before < 1.0
        page.keyboard.press("u")
        assert page.get_attribute("[data-testid=coverage-toggle]", "aria-pressed") == "true"
        assert page.locator("#coverage").is_visible()
        tinted = opaque_pixels(page, "coverage")
        size = page.evaluate("(() => { const c = document.getElementById('coverage'); return c.width * c.height; })()")
        assert abs(tinted / size - before) < TOLERANCE, (tinted, size, before)
        assert abs(_shown_uncovered(page) - before) < TOLERANCE, (_shown_uncovered(page), before)
        assert page.text_content("[data-testid=uncovered]") == f"uncovered {_shown_uncovered(page) * 100:.1f}%"

        # A mask accepted here: a thick brush stroke across the bottom band of the image.
        existing = {m["id"] for m in _masks(live_server)}
        shown_before = _shown_uncovered(page)
        page.keyboard.press("b")
        for _ in range(6):
            page.keyboard.press("]")
        y = height * 7 // 8
        page.mouse.move(*client_point(page, (height, width), (width * 0.1, y)))
        page.mouse.down()
        page.mouse.move(*client_point(page, (height, width), (width * 0.9, y)), steps=8)
        page.mouse.up()
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelector('.save-status')?.textContent === 'saved'", timeout=60_000)
        masks = _masks(live_server)
        created += [m["id"] for m in masks if m["id"] not in existing]
        after = _expected_uncovered(masks, height, width)
        assert after < before, (before, after)  # (other tests' masks may cover most of the image already)
        page.wait_for_function(
            f"Number(document.querySelector('[data-testid=uncovered]').dataset.fraction) < {shown_before}",
            timeout=10_000,
        )
        assert abs(_shown_uncovered(page) - after) < TOLERANCE, (_shown_uncovered(page), after)
        assert abs(opaque_pixels(page, "coverage") / size - after) < TOLERANCE

        page.keyboard.press("u")
        assert page.locator("#coverage").is_hidden()
        assert page.get_attribute("[data-testid=coverage-toggle]", "aria-pressed") == "false"
        assert not errors, errors
    finally:
        with live_server.api() as api:  # leave the shared image as it was
            for mask_id in created:
                api.delete(f"/api/masks/{mask_id}")
