"""The ML engineer page in headless Chromium: versions with metrics side by side, the live loss
curve of a running round, promote and roll back through the page (the server's active version
follows).

Seeds its own project in the live server's database: the default untrained version serves it, one
trained child with held-out metrics (and its parent's), and a running train job with a loss curve.
"""

from __future__ import annotations

from backend.core.db import make_engine, make_session_factory
from backend.tables import Job, JobStatus, ModelOrigin, ModelVersion

HELD_OUT = {
    "miou_1pt": 0.61,
    "miou_at_1": 0.61,
    "miou_at_3": 0.7,
    "miou_at_5": 0.74,
    "noc85": 9.0,
    "noc90": 12.5,
    "n_samples": 4,
}
PARENT = {**HELD_OUT, "miou_1pt": 0.2, "noc90": 19.0}


def _seed(live_server) -> tuple[int, int, int]:
    with live_server.api() as http:
        project = http.post("/api/projects", json={"name": "Models page"}).raise_for_status().json()
        parent = http.get(f"/api/projects/{project['id']}/model").raise_for_status().json()["id"]
    engine = make_engine(live_server.settings.db_url)
    with make_session_factory(engine)() as db:
        child = ModelVersion(
            project_id=project["id"],
            parent_id=parent,
            name="round 1",
            architecture="vit_t",
            origin=ModelOrigin.trained,
            artifacts={"encoder_from": parent},
            metrics={"held_out": HELD_OUT, "parent_held_out": PARENT},
            data_snapshot={"masks": 12},
            hyperparameters={"steps": 50},
        )
        db.add(child)
        db.add(
            Job(
                project_id=project["id"],
                kind="train",
                status=JobStatus.running,
                progress=0.4,
                message="training: step 20/50",
                result={
                    "step": 20,
                    "total_steps": 50,
                    "loss": 0.5,
                    "eta_seconds": 30,
                    "loss_curve": [[i, 2.0 / i] for i in range(1, 21)],
                },
            )
        )
        db.commit()
        child_id = child.id
    engine.dispose()
    return project["id"], parent, child_id


def test_models_page_shows_metrics_curve_and_promotes_then_rolls_back(live_server, page):
    project_id, parent, child = _seed(live_server)
    page.goto(f"{live_server.url}/login")
    page.evaluate("token => localStorage.setItem('dataengine.token', token)", live_server.token)
    page.goto(f"{live_server.url}/models/{project_id}")
    row = f"[data-version='{child}']"
    page.wait_for_selector(row, timeout=30_000)

    assert page.text_content(f"{row} [data-metric='miou_1pt']").startswith("0.610 (+0.410)")
    assert page.text_content(f"{row} [data-metric='noc90']").startswith("12.50 (-6.50)")
    assert "active" in page.get_attribute(f"[data-version='{parent}']", "class")
    page.wait_for_function(
        "() => document.querySelector('[data-train-status]').textContent.includes('step 20/50')", timeout=30_000
    )
    drawn = page.evaluate("""() => {
        const c = document.querySelector('.curve canvas');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i]) n++; return n; }""")
    assert drawn > 100
    assert page.is_enabled("[data-cancel]")

    page.click(f"[data-promote='{child}']")
    page.wait_for_selector(f"[data-version='{child}'].active", timeout=30_000)
    with live_server.api() as http:
        assert http.get(f"/api/projects/{project_id}/model").json()["id"] == child
    page.click("[data-rollback]")
    page.wait_for_selector(f"[data-version='{parent}'].active", timeout=30_000)
    assert "rolled back" in page.text_content("[data-status]")
    with live_server.api() as http:
        assert http.get(f"/api/projects/{project_id}/model").json()["id"] == parent


def test_round_form_sends_the_encoder_mode_and_start_from(live_server, page):
    """The round form's "Train" and "Start from" choices reach the server as RetrainParams fields, and
    the versions list says what each round trained and an architecture change. (A whole-model round
    cannot run on the CPU box: only the request is checked.)"""
    with live_server.api() as http:
        project = http.post("/api/projects", json={"name": "Round options"}).raise_for_status().json()
        parent = http.get(f"/api/projects/{project['id']}/model").raise_for_status().json()["id"]
    engine = make_engine(live_server.settings.db_url)
    with make_session_factory(engine)() as db:
        lora = ModelVersion(
            project_id=project["id"],
            parent_id=parent,
            name="lora round",
            architecture="vit_h",
            origin=ModelOrigin.trained,
            artifacts={},
            metrics={
                "held_out": HELD_OUT,
                "parent_held_out": PARENT,
                "active_held_out": {**PARENT, "miou_1pt": 0.5},
                "architecture_change": {"from": "vit_t", "from_id": parent, "to": "vit_h"},
            },
            hyperparameters={"steps": 50, "encoder_mode": "lora", "lora_rank": 4},
        )
        db.add(lora)
        db.commit()
        lora_id = lora.id
    engine.dispose()
    page.goto(f"{live_server.url}/login")
    page.evaluate("token => localStorage.setItem('dataengine.token', token)", live_server.token)
    page.goto(f"{live_server.url}/models/{project['id']}")
    row = f"[data-version='{lora_id}']"
    page.wait_for_selector(row, timeout=30_000)
    assert page.text_content(f"{row} [data-trained]") == "whole model (LoRA rank 4)"
    assert page.text_content(f"{row} [data-architecture-change]") == "vit_t → vit_h"
    assert "serving at the round's start (what auto-promotion compares with): 0.500" in page.get_attribute(
        f"{row} [data-metric='miou_1pt']", "title"
    )

    assert page.is_hidden("input[name=encoder_last_k]") and page.is_hidden("input[name=lora_rank]")
    page.select_option("select[name=encoder_mode]", "last_k")
    page.fill("input[name=encoder_last_k]", "3")
    assert page.is_hidden("input[name=lora_rank]")
    page.select_option("select[name=from_model_version_id]", str(lora_id))
    page.fill("input[name=batch_size]", "4")
    page.fill("input[name=accumulation_steps]", "2")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/retrain")) as sent:
        page.click("form[data-retrain] button[type=submit]")
    body = sent.value.post_data_json
    assert body["encoder_mode"] == "last_k" and body["encoder_last_k"] == 3 and "lora_rank" not in body
    assert body["from_model_version_id"] == lora_id and body["accumulation_steps"] == 2 and body["batch_size"] == 4

    page.select_option("select[name=encoder_mode]", "lora")
    page.fill("input[name=lora_rank]", "16")
    page.select_option("select[name=from_model_version_id]", "")  # the active version
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/retrain")) as sent:
        page.click("form[data-retrain] button[type=submit]")
    body = sent.value.post_data_json
    assert body["encoder_mode"] == "lora" and body["lora_rank"] == 16 and "encoder_last_k" not in body
    assert body["from_model_version_id"] is None
