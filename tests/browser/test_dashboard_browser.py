"""The dashboard page in headless Chromium: a seeded project's charts are drawn and its figures shown.

Seeds its own project in the live server's database (masks with known times and clicks, an auto mask,
two model rounds, a running job), opens /dashboard/<id> as the admin and reads the page.
"""

from __future__ import annotations

from datetime import UTC, datetime

from backend.core.db import make_engine, make_session_factory
from backend.tables import Image, ImageStatus, Job, JobStatus, Mask, MaskSource, ModelOrigin, ModelVersion, Stage

CHARTS = ["images", "masks", "histogram", "timeline", "models"]


def _seed(live_server) -> int:
    with live_server.api() as http:
        project = http.post("/api/projects", json={"name": "Dashboard seeded"}).raise_for_status().json()
    engine = make_engine(live_server.settings.db_url)
    with make_session_factory(engine)() as db:
        images = [
            Image(
                project_id=project["id"],
                file_name=f"d{i}.jpg",
                storage_key=f"dash{i}",
                sha256=f"{i:064x}",
                width=8,
                height=8,
                size_bytes=1,
                status=ImageStatus.done if i == 0 else ImageStatus.new,
            )
            for i in range(3)
        ]
        db.add_all(images)
        db.flush()
        for i, seconds in enumerate([10, 20, 30, 40]):
            db.add(
                Mask(
                    image_id=images[0].id,
                    project_id=project["id"],
                    rle={"size": [8, 8], "counts": "08"},
                    bbox=[0, 0, 1, 1],
                    area=1,
                    source=MaskSource.manual,
                    stage=Stage.assisted_manual,
                    seconds_spent=seconds,
                    clicks=i + 1,
                    author_id=1,
                    provenance={"origin": "annotated"},
                    created_at=datetime(2026, 1, 1, 10, 10 * i, tzinfo=UTC),
                )
            )
        db.add(
            Mask(
                image_id=images[1].id,
                project_id=project["id"],
                rle={"size": [8, 8], "counts": "08"},
                bbox=[0, 0, 1, 1],
                area=1,
                source=MaskSource.auto,
                stage=Stage.fully_automatic,
                provenance={"origin": "auto"},
                created_at=datetime(2026, 1, 2, 9, tzinfo=UTC),
            )
        )
        for round_, miou in enumerate([0.6, 0.7]):
            db.add(
                ModelVersion(
                    project_id=project["id"],
                    name=f"round {round_}",
                    architecture="vit_t",
                    origin=ModelOrigin.trained,
                    metrics={"miou": miou},
                    created_at=datetime(2026, 1, 1 + round_, tzinfo=UTC),
                )
            )
        db.add(Job(project_id=project["id"], kind="embed", status=JobStatus.running, progress=0.25, message="1/4"))
        db.commit()
    engine.dispose()
    return project["id"]


def test_dashboard_renders_charts_and_the_seeded_numbers(live_server, page):
    project_id = _seed(live_server)
    page.goto(f"{live_server.url}/login")
    page.evaluate("token => localStorage.setItem('dataengine.token', token)", live_server.token)
    page.goto(f"{live_server.url}/dashboard/{project_id}")
    page.wait_for_selector("[data-figure='masks-total']", timeout=30_000)

    figures = {
        name: page.text_content(f"[data-figure='{name}']")
        for name in [
            "images-total",
            "masks-total",
            "masks-per-image",
            "seconds-median",
            "seconds-p90",
            "masks-per-hour",
            "clicks-per-mask",
        ]
    }
    assert figures == {
        "images-total": "3",
        "masks-total": "5",
        "masks-per-image": "1.7",
        "seconds-median": "25.0",
        "seconds-p90": "37.0",
        "masks-per-hour": "144.0",
        "clicks-per-mask": "2.50",
    }

    for name in CHARTS:
        drawn = page.evaluate(
            """name => {
                const c = document.querySelector(`canvas[data-chart='${name}']`);
                if (!c || !c.width || !c.height) return 0;
                const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
                return n;
            }""",
            name,
        )
        assert drawn > 500, f"chart {name} looks empty ({drawn} painted pixels)"

    rows = page.locator("[data-table='annotators'] tbody tr")
    assert rows.count() == 1 and rows.first.locator("td").nth(1).text_content() == "4"
    job = page.locator("[data-jobs] [data-status='running']")
    assert job.count() == 1 and job.locator("progress").get_attribute("value") == "0.25"
    assert page.get_attribute("[data-gate]", "data-gate") == "closed"  # 4 masks < 1000
    assert page.is_disabled("[data-control='advance']")

    with page.expect_download() as download:
        page.click("text=Export CSV >> nth=0")
    assert download.value.suggested_filename == f"project-{project_id}-annotators.csv"
