"""The semi-automatic stage end to end, ending in the browser: stage-1 masks → a trained detector →
its proposals pre-filled on new images → an annotator sees them on the annotate page, deletes one
and corrects another; the telemetry records deleted and corrected.

Everything before the browser is the real pipeline through the live server's API, as in
tests/backend/test_detection_api.py: davis345 objects saved as stage-1 masks, ``POST
/detector/train``, the stage moved to semi_automatic, ``POST /detector/propose``. The live server
has no Celery worker, so the tasks run eagerly inside the request that starts them. The model is
the untrained vit_t (seeded random weights), so proposals use thresholds of 0 and at most 3 boxes
per image: the test checks that pre-filled masks travel faithfully, not that they are good.

The correction is saved through a server that fails the first request, since a correction must
survive an outage like any accepted mask.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from pycocotools import mask as mask_util
from scipy.ndimage import distance_transform_edt
from sqlalchemy import select

from backend.core.db import make_engine, make_session_factory
from backend.tables import Mask
from backend.worker import celery_app
from tests.backend.stage1_objects import NEW, SMALL, STAGE1, davis_images, mask_rle
from tests.browser.page_helpers import (
    DECODER_TIMEOUT_MS,
    client_point,
    opaque_pixels,
    record_save_statuses,
    wait_for_pixels,
    wait_for_save_after_retry,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANNOTATOR = ("prefill-annotator", "annotator password 1")
PROPOSE = {"score_thresh": 0.0, "pred_iou_thresh": 0.0, "max_boxes": 3}
TASK_TIMEOUT_S = 600  # train and propose run inside their requests (eager), embeddings included


@pytest.fixture
def eager_tasks(live_server) -> Iterator[None]:
    """The live server has no Celery worker: jobs run inside the request that starts them."""
    celery_app.configure(live_server.settings, eager=True)
    yield
    celery_app.configure(live_server.settings, eager=False)


def _check_succeeded(http: httpx.Client, response: httpx.Response) -> None:
    assert response.status_code == 202, response.text
    job = http.get(f"/api/jobs/{response.json()['id']}").raise_for_status().json()
    assert job["status"] == "succeeded", job


def _annotator_client(live_server) -> httpx.Client:
    token = httpx.post(f"{live_server.url}/api/auth/token", data={"username": ANNOTATOR[0], "password": ANNOTATOR[1]})
    return httpx.Client(
        base_url=live_server.url,
        timeout=120,
        headers={"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"},
    )


def _prefilled_project(live_server, data_root) -> tuple[int, int, list[dict]]:
    """A project in stage 2 whose new images hold detector proposals, the annotator its member;
    returns (project id, the new image with the most pre-filled masks, its masks oldest first)."""
    root = data_root / "davis345"
    davis = davis_images(data_root)
    admin = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {live_server.token}"}, timeout=TASK_TIMEOUT_S
    )
    with admin:
        project = (
            admin.post(
                "/api/projects",
                json={
                    "name": "Detector pre-fill",
                    "settings": {"gates": {"semi_automatic": {"min_masks": 1}}},
                },
            )
            .raise_for_status()
            .json()
        )
        pid = project["id"]
        user = admin.post("/api/users", json={"username": ANNOTATOR[0], "password": ANNOTATOR[1], "role": "annotator"})
        admin.post(
            f"/api/projects/{pid}/members", json={"user_id": user.raise_for_status().json()["id"]}
        ).raise_for_status()
        files = [("files", (name.rsplit("/", 1)[-1], (root / name).read_bytes(), "image/jpeg")) for name, _ in davis]
        ids = [
            image["id"]
            for image in admin.post(f"/api/projects/{pid}/images", files=files).raise_for_status().json()["images"]
        ]
        with _annotator_client(live_server) as annotator:
            for image_id, (_, mask_names) in zip(ids[:STAGE1], davis[:STAGE1]):
                annotator.post(f"/api/images/{image_id}/claim").raise_for_status()
                for k, mask_name in enumerate(mask_names):
                    annotator.post(
                        f"/api/images/{image_id}/masks",
                        json={"client_id": f"stage1-{image_id}-{k}", "rle": mask_rle(root / mask_name)},
                    ).raise_for_status()
        _check_succeeded(admin, admin.post(f"/api/projects/{pid}/detector/train", json=SMALL))
        admin.post(f"/api/projects/{pid}/stage", json={"stage": "semi_automatic"}).raise_for_status()
        _check_succeeded(admin, admin.post(f"/api/projects/{pid}/detector/propose", json=PROPOSE))
        listed = {i: admin.get(f"/api/images/{i}/masks").raise_for_status().json() for i in ids[STAGE1:]}
    assert len(listed) == NEW
    image_id, masks = max(listed.items(), key=lambda item: len(item[1]))
    assert len(masks) >= 2, f"the detector pre-filled {len(masks)} mask(s): one to delete and one to correct are needed"
    assert all(m["source"] == "detector" and m["prefill_outcome"] is None for m in masks)
    return pid, image_id, masks


def _pixel_only_in(mask: dict, others: list[dict]) -> tuple[float, float]:
    """(x, y) deepest inside `mask` and outside every mask of `others`: C there picks `mask`."""

    def pixels(m: dict) -> np.ndarray:
        return mask_util.decode({"size": m["rle"]["size"], "counts": m["rle"]["counts"].encode("ascii")}).astype(bool)

    region = pixels(mask)
    for other in others:
        region &= ~pixels(other)
    assert region.any(), f"mask #{mask['id']} is covered by later masks everywhere"
    y, x = np.unravel_index(np.argmax(distance_transform_edt(region)), region.shape)
    return float(x), float(y)


def _entry(page, mask_id: int):
    """The mask list's entry of saved mask `mask_id` ("#<id> · ...")."""
    return page.locator(".masks li", has_text=f"#{mask_id} ·")


def _listed_ids(page) -> list[int]:
    labels = page.locator(".masks li span:nth-of-type(2)").all_inner_texts()
    return [int(label.split(" ")[0][1:]) for label in labels if label.startswith("#")]


def _open_as_annotator(page, live_server, project_id: int, image_id: int) -> None:
    page.goto(live_server.url + "/")
    page.wait_for_url("**/login**")
    page.fill("input[name=username]", ANNOTATOR[0])
    page.fill("input[name=password]", ANNOTATOR[1])
    page.click("button[type=submit]")
    page.wait_for_selector(f"a[data-project='{project_id}']")
    page.goto(f"{live_server.url}/annotate/{project_id}/{image_id}")
    page.wait_for_selector("[data-testid=decoder-status][data-ready=true]", timeout=DECODER_TIMEOUT_MS)


def test_prefilled_masks_are_shown_deleted_and_corrected(page, live_server, data_root, eager_tasks):
    project_id, image_id, masks = _prefilled_project(live_server, data_root)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with _annotator_client(live_server) as annotator:
        info = annotator.get(f"/api/images/{image_id}").raise_for_status().json()
        size = (info["height"], info["width"])
        corrected, deleted, kept = masks[0], masks[1], masks[2:]

        # Shown: every pre-filled mask listed with its origin and its actions, and drawn.
        _open_as_annotator(page, live_server, project_id, image_id)
        for mask in masks:
            entry = _entry(page, mask["id"])
            entry.filter(has_text=f"#{mask['id']} · {mask['area']} px (detector, pre-filled)").wait_for()
            assert entry.get_by_role("button", name="correct").count() == 1
            assert entry.get_by_role("button", name="delete").count() == 1
        wait_for_pixels(page, "masks")

        # Delete one.
        _entry(page, deleted["id"]).get_by_role("button", name="delete").click()
        _entry(page, deleted["id"]).wait_for(state="detached")

        # "correct" starts a working mask that IS the saved mask, before any click; Esc leaves it as it was.
        assert opaque_pixels(page, "overlay") == 0
        _entry(page, corrected["id"]).get_by_role("button", name="correct").click()
        _entry(page, corrected["id"]).filter(has_text="correcting").wait_for()
        assert opaque_pixels(page, "overlay") > 0
        page.keyboard.press("Escape")
        _entry(page, corrected["id"]).get_by_role("button", name="correct").wait_for()
        assert opaque_pixels(page, "overlay") == 0

        # C over the mask starts the correction too; a click refines it (the single-mask answer), a
        # brush stroke adds to it (so the result is never empty whatever the random decoder says).
        x, y = _pixel_only_in(corrected, kept)
        page.mouse.move(*client_point(page, size, (x, y)))
        page.keyboard.press("c")
        _entry(page, corrected["id"]).filter(has_text="correcting").wait_for()
        page.mouse.click(*client_point(page, size, (x, y)))
        page.wait_for_selector(".candidates button[data-token='0'][aria-pressed='true']")
        page.keyboard.press("b")
        page.mouse.move(*client_point(page, size, (x, y)))
        page.mouse.down()
        page.mouse.move(*client_point(page, size, (x + size[1] / 20, y)), steps=4)
        page.mouse.up()

        posted: list[dict] = []
        held_retry: list = []

        def fail_first_hold_retry(route):
            if route.request.method != "POST":
                return route.continue_()
            posted.append(route.request.post_data_json)
            if len(posted) == 1:
                return route.fulfill(
                    status=503, content_type="application/json", body='{"detail": "service unavailable"}'
                )
            held_retry.append(route)  # answered below, once the unsaved correction has been looked at

        page.route("**/api/images/*/masks", fail_first_hold_retry)
        record_save_statuses(page)
        page.keyboard.press("Enter")
        for _ in range(600):  # up to a minute on a loaded machine
            if held_retry:
                break
            page.wait_for_timeout(100)
        assert held_retry, (posted, page.evaluate("window.saveStatuses"))
        # The replaced mask leaves the view at once; its correction waits in the list until saved.
        assert _entry(page, corrected["id"]).count() == 0
        assert page.locator(".masks li", has_text=f"correction of #{corrected['id']}").count() == 1
        held_retry[0].continue_()
        wait_for_save_after_retry(page)
        assert len(posted) == 2 and posted[0] == posted[1]
        assert posted[0]["replaces_mask_id"] == corrected["id"]
        assert len(posted[0]["prompts"]["points"]) == 1 and posted[0]["prompts"]["strokes"] == 1
        assert posted[0]["prompts"]["candidate"] == 0

        # After a reload: the kept pre-filled masks and the correction, nothing else.
        now = annotator.get(f"/api/images/{image_id}/masks").raise_for_status().json()
        correction = now[-1]
        assert [m["id"] for m in now] == [m["id"] for m in kept] + [correction["id"]]
        assert correction["source"] == "manual" and correction["parent_mask_id"] == corrected["id"]
        assert correction["client_id"] == posted[0]["client_id"]
        page.reload()
        page.wait_for_selector("[data-testid=decoder-status][data-ready=true]", timeout=DECODER_TIMEOUT_MS)
        _entry(page, correction["id"]).wait_for()
        assert _listed_ids(page) == [m["id"] for m in now]
        wait_for_pixels(page, "masks")
    assert not errors, errors

    engine = make_engine(live_server.settings.db_url)
    try:
        with make_session_factory(engine)() as db:
            outcomes = {m.id: m.prefill_outcome for m in db.scalars(select(Mask).where(Mask.image_id == image_id))}
    finally:
        engine.dispose()
    assert outcomes[deleted["id"]] == "deleted" and outcomes[corrected["id"]] == "corrected"
    assert outcomes[correction["id"]] is None and all(outcomes[m["id"]] is None for m in kept)
