"""The dashboard's "what to annotate next" panel in headless Chromium (frontend/src/dashboard/selection.ts).

Seeds a project of six images in the live server's database, five of them scored the way the score
job stores scores (`store_scores` + `rank_project`; images 0-2 one scene, so 1 and 2 are flagged as
near duplicates of 0), sets the strategy with PATCH and reads the panel: it must show what
`GET /api/projects/{id}/selection` says, in the API's order. The panel has no strategy control (the
strategy is a project setting), so a switch is a PATCH and a reload.
"""

from __future__ import annotations

import hashlib

import numpy as np

from backend.core.db import make_engine, make_session_factory
from backend.selection import service
from backend.tables import Image, ImageStatus, ModelOrigin, ModelVersion, Project
from model_server.api import ImageScores

# Image 1 the least sure, then 4; image 5 is never scored. Off the bins' edges: the API's histogram
# (np.histogram over linspace edges) puts 0.3 into the 0.2-0.3 bin, as 0.1 * 3 > 0.3 in floats.
UNCERTAINTY = [0.15, 0.95, 0.25, 0.35, 0.65]


def _unit(vector: np.ndarray) -> list[float]:
    return (vector / np.linalg.norm(vector)).tolist()


def _seed(live_server) -> tuple[int, list[int]]:
    with live_server.api() as http:
        project = http.post("/api/projects", json={"name": "Selection panel"}).raise_for_status().json()
    rng = np.random.default_rng(0)
    scene = rng.standard_normal(256)
    vectors = [scene, scene + 1e-3 * rng.standard_normal(256), scene + 1e-3 * rng.standard_normal(256)]
    vectors += [rng.standard_normal(256), rng.standard_normal(256)]
    engine = make_engine(live_server.settings.db_url)
    with make_session_factory(engine)() as db:
        images = [
            Image(
                project_id=project["id"],
                file_name=f"next{i}.jpg",
                storage_key=f"selection-panel-{i}",
                sha256=hashlib.sha256(f"selection panel {i}".encode()).hexdigest(),
                width=8,
                height=8,
                size_bytes=1,
                status=ImageStatus.new,
            )
            for i in range(6)
        ]
        db.add_all(images)
        # Scores name the version they came from; no model runs here, so a row is enough.
        version = ModelVersion(
            project_id=project["id"], name="scored", architecture="vit_t", origin=ModelOrigin.untrained
        )
        db.add(version)
        db.flush()
        row = db.get_one(Project, project["id"])
        scored = {
            image.id: ImageScores(pooled=_unit(v), uncertainty=u, details={"disagreement": u})
            for image, v, u in zip(images, vectors, UNCERTAINTY)
        }
        service.store_scores(db, row, version.id, scored)
        service.rank_project(db, row)
        db.commit()
        image_ids = [image.id for image in images]
    engine.dispose()
    return project["id"], image_ids


def _set_strategy(live_server, project_id: int, strategy: str) -> dict:
    """PATCHes the strategy; returns what the selection API then says (the panel's own limit, 10)."""
    with live_server.api() as http:
        http.patch(
            f"/api/projects/{project_id}", json={"settings": {"selection": {"strategy": strategy}}}
        ).raise_for_status()
        return http.get(f"/api/projects/{project_id}/selection", params={"limit": 10}).raise_for_status().json()


def _panel(page, strategy: str) -> dict:
    panel = page.locator(f"[data-selection='{strategy}']")
    panel.wait_for(timeout=30_000)
    rows = panel.locator("[data-upcoming]")
    return {
        "heading": panel.locator("h3").text_content(),
        "summary": panel.locator("p.muted").first.text_content(),
        "upcoming": [
            {
                "image_id": int(rows.nth(k).get_attribute("data-upcoming")),
                "cells": [rows.nth(k).locator("td").nth(c).text_content() for c in range(4)],
            }
            for k in range(rows.count())
        ],
        "histogram": [
            int(bar.get_attribute("title").split()[0]) for bar in panel.locator("[data-histogram] [data-bin]").all()
        ],
    }


def _expected_cells(view: dict) -> list[dict]:
    return [
        {
            "image_id": u["image_id"],
            "cells": [
                str(k + 1),
                u["file_name"],
                "not scored" if u["uncertainty"] is None else f"{u['uncertainty']:.3f}",
                "" if u["near_duplicate_of"] is None else f"#{u['near_duplicate_of']}",
            ],
        }
        for k, u in enumerate(view["upcoming"])
    ]


def test_the_panel_shows_the_strategy_its_order_scores_and_duplicates(live_server, page):
    project_id, ids = _seed(live_server)
    view = _set_strategy(live_server, project_id, "uncertainty")
    # What the seed stored, as the API reads it: the panel is compared with this below.
    assert [u["image_id"] for u in view["upcoming"]] == [ids[i] for i in [1, 4, 3, 2, 0, 5]]
    assert view["uncertainty_histogram"] == [0, 1, 1, 1, 0, 0, 1, 0, 0, 1]
    assert (view["unscored"], view["near_duplicates"]) == (1, 2)

    page.goto(f"{live_server.url}/login")
    page.evaluate("token => localStorage.setItem('dataengine.token', token)", live_server.token)
    page.goto(f"{live_server.url}/dashboard/{project_id}")
    shown = _panel(page, "uncertainty")
    assert shown["heading"] == "What to annotate next: uncertainty"
    assert shown["summary"].startswith("1 images not scored yet · 2 near duplicates flagged")
    assert shown["histogram"] == view["uncertainty_histogram"]
    assert shown["upcoming"] == _expected_cells(view)
    assert shown["upcoming"][0]["cells"][2:] == ["0.950", f"#{ids[0]}"]  # the least sure, a near duplicate
    assert shown["upcoming"][-1]["cells"][2] == "not scored"

    switched = _set_strategy(live_server, project_id, "upload_order")
    assert [u["image_id"] for u in switched["upcoming"]] == ids
    page.reload()
    shown = _panel(page, "upload_order")
    assert shown["heading"] == "What to annotate next: upload order"
    assert [u["image_id"] for u in shown["upcoming"]] == ids
    assert shown["upcoming"] == _expected_cells(switched)
    assert shown["histogram"] == view["uncertainty_histogram"]  # the scores are the strategy's input, not its output
