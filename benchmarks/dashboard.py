"""Dashboard latency on PostgreSQL with 10 000 images and 1 000 000 masks, through the real app.

Creates (drops first) the database `dataengine_bench` on the server named by
`DATAENGINE_BENCH_POSTGRES_URL` (default: the test server, postgresql+psycopg://postgres@127.0.0.1:5432/test),
migrates it with Alembic, fills it in SQL (INSERT ... SELECT generate_series: one project, 20
annotators, 10 000 images, 1 000 000 masks of all stages and sources, 2% soft-deleted, review rows,
model rounds, jobs) with the row triggers off (`session_replication_role = replica`: a bulk load), then
builds the dashboard rollups with `rebuild_rollups` (what `dataengine rebuild-rollups` does; ordinary
writes keep them up to date through the triggers), runs VACUUM ANALYZE (as autovacuum would), then times GET requests through
`create_app` + TestClient with a manager's token: p50/p95 over `--repeat` requests after warm-up.
Prints a markdown table, and what the rollup triggers add to mask writes (the same INSERTs with the
triggers on and off, rolled back). Target: the summary endpoint under 200 ms p95.

    python benchmarks/dashboard.py [--images 10000] [--masks 1000000] [--repeat 30] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.db import make_engine
from backend.core.migrations import upgrade
from backend.core.security import create_access_token
from backend.dashboard.rollups import rebuild_rollups
from backend.main import create_app

SERVER = os.environ.get("DATAENGINE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NAME = "dataengine_bench"
ANNOTATORS = 20

FILL = [
    # users 1 = manager, 2..21 = annotators
    "INSERT INTO users (username, password_hash, role, is_active, created_at) "
    "SELECT CASE WHEN g = 1 THEN 'manager' ELSE 'annotator' || g END, 'x', "
    "CASE WHEN g = 1 THEN 'manager' ELSE 'annotator' END, true, now() FROM generate_series(1, :annotators + 1) g",
    "INSERT INTO projects (name, description, stage, settings, created_by, created_at) "
    "VALUES ('bench', '', 'semi_automatic', '{}', 1, now())",
    "INSERT INTO project_members (project_id, user_id, added_at) SELECT 1, id, now() FROM users",
    "INSERT INTO images (project_id, file_name, storage_key, sha256, width, height, size_bytes, status, stage_done, "
    "assignee_id, created_at) SELECT 1, 'img' || g || '.jpg', 'k' || g, lpad(g::text, 64, '0'), 1500, 1000, 300000, "
    "(ARRAY['new','in_progress','done','done','skipped'])[1 + g % 5], "
    "CASE WHEN g % 2 = 0 THEN '{\"assisted_manual\": \"2026-01-01T00:00:00\"}' ELSE '{}' END::json, "
    "CASE WHEN g % 5 IN (1, 2, 3) THEN 2 + g % :annotators END, now() FROM generate_series(1, :images) g",
    # mask g: manual 60% (author by g), detector 10%, auto 30%; ~1.4 kB of RLE-like text per mask
    "INSERT INTO masks (image_id, project_id, rle, bbox, area, source, stage, seconds_spent, clicks, author_id, "
    "review_status, prefill_outcome, deleted_at, created_at, updated_at) "
    "SELECT 1 + g % :images, 1, json_build_object('size', json_build_array(1000, 1500), 'counts', repeat(md5(g::text), 40)), "
    "'[0, 0, 10, 10]', 100 + g % 5000, "
    "CASE WHEN g % 10 < 6 THEN 'manual' WHEN g % 10 = 6 THEN 'detector' ELSE 'auto' END, "
    "CASE WHEN g % 10 < 4 THEN 'assisted_manual' WHEN g % 10 < 7 THEN 'semi_automatic' ELSE 'fully_automatic' END, "
    "CASE WHEN g % 10 < 6 THEN 2 + (g::bigint * 7919 % 600) / 10.0 END, CASE WHEN g % 10 < 6 THEN 1 + g % 9 END, "
    "CASE WHEN g % 10 < 6 THEN 2 + (g / 10) % :annotators END, "
    "CASE WHEN g % 10 >= 7 AND g % 50 = 7 THEN 'pending' ELSE 'none' END, "
    "CASE WHEN g % 10 = 6 THEN (ARRAY['kept','corrected','deleted'])[1 + g % 3] END, "
    "CASE WHEN g % 50 = 0 THEN now() END, "
    "timestamptz '2026-01-01' + (g * interval '2.5 seconds'), timestamptz '2026-01-01' + (g * interval '2.5 seconds') "
    "FROM generate_series(1, :masks) g",
    "INSERT INTO mask_reviews (mask_id, project_id, reviewer_id, decision, iou, created_at) "
    "SELECT id, 1, 1, (ARRAY['accept','fix','reject'])[1 + id % 3], "
    "CASE id % 3 WHEN 0 THEN 1.0 WHEN 1 THEN 0.8 + (id % 20) / 100.0 END, now() "
    "FROM masks WHERE review_status = 'pending' AND id % 5 = 0",
    "INSERT INTO model_versions (project_id, name, architecture, origin, status, artifacts, metrics, created_at) "
    "SELECT 1, 'round ' || g, 'vit_b', 'trained', 'ready', '{}', json_build_object('miou', 0.6 + g / 100.0), "
    "now() + g * interval '1 hour' FROM generate_series(1, 6) g",
    "INSERT INTO jobs (project_id, kind, status, progress, message, created_at) "
    "SELECT 1, (ARRAY['embed','auto','train'])[1 + g % 3], CASE WHEN g > 48 THEN 'running' ELSE 'succeeded' END, "
    "CASE WHEN g > 48 THEN 0.5 ELSE 1.0 END, '', now() FROM generate_series(1, 50) g",
]

# What the rollup triggers cost the writers: the same inserts with the triggers on and off, rolled back.
ONE_MASK = (
    "INSERT INTO masks (image_id, project_id, rle, bbox, area, source, stage, seconds_spent, clicks, author_id, "
    'review_status, created_at, updated_at) VALUES (:image, 1, \'{"size": [1, 1], "counts": "1"}\', \'[0, 0, 1, 1]\', '
    "1, 'manual', 'semi_automatic', 12.5, 3, 2, 'none', now(), now())"
)
BULK = (
    "INSERT INTO masks (image_id, project_id, rle, bbox, area, source, stage, seconds_spent, clicks, author_id, "
    "review_status, created_at, updated_at) SELECT 1 + g % 10000, 1, '{}', '[0, 0, 1, 1]', 1, 'auto', "
    "'fully_automatic', NULL, NULL, NULL, 'none', now(), now() FROM generate_series(1, :n) g"
)


def write_costs(url: str, singles: int = 300, bulk: int = 20_000) -> list[tuple[str, float, float]]:
    """(what, ms with triggers, ms without) for `singles` one-row INSERT statements and one `bulk`-row INSERT."""
    engine = make_engine(url)
    out = []
    for what, run in [
        (
            f"{singles} one-mask INSERTs (per insert)",
            lambda c: [c.execute(text(ONE_MASK), {"image": 1 + i}) for i in range(singles)],
        ),
        (f"one INSERT of {bulk} masks", lambda c: c.execute(text(BULK), {"n": bulk})),
    ]:
        times = []
        for replica in (False, True):
            with engine.connect() as conn:
                trans = conn.begin()
                if replica:
                    conn.execute(text("SET LOCAL session_replication_role = replica"))
                start = time.perf_counter()
                run(conn)
                times.append((time.perf_counter() - start) * 1000 / (singles if "one-mask" in what else 1))
                trans.rollback()
        out.append((what, times[0], times[1]))
    engine.dispose()
    return out


ENDPOINTS = [
    "/dashboard",
    "/dashboard/annotators",
    "/dashboard/timeline?bucket=day",
    "/dashboard/timeline?bucket=hour",
    "/dashboard/me",
]


def build(url: str, images: int, masks: int) -> tuple[float, float]:
    """Create and fill the database; returns (seconds filling, seconds rebuilding the rollups)."""
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{NAME}"'))
    admin.dispose()
    upgrade(url)
    start = time.perf_counter()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))  # no triggers (nor FK checks)
        for statement in FILL:
            conn.execute(text(statement), {"annotators": ANNOTATORS, "images": images, "masks": masks})
    filled = time.perf_counter()
    with Session(engine) as db:
        rebuild_rollups(db, 1)
        db.commit()
    rebuilt = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return filled - start, rebuilt - filled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--masks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="reuse an existing filled dataengine_bench")
    args = parser.parse_args()
    url = make_url(SERVER).set(database=NAME).render_as_string(hide_password=False)
    if not args.keep:
        fill, rebuild = build(url, args.images, args.masks)
        print(f"filled {args.images} images and {args.masks} masks in {fill:.1f} s; rollups rebuilt in {rebuild:.1f} s")

    settings = Settings(database_url=url, secret_key="bench-" + "x" * 40, data_dir="/tmp/dataengine_bench")
    app = create_app(settings)
    headers = {"Authorization": "Bearer " + create_access_token(1, settings.ensure_secret_key(), 60)}
    me = {"Authorization": "Bearer " + create_access_token(2, settings.ensure_secret_key(), 60)}
    rows = []
    with TestClient(app) as client:
        for endpoint in ENDPOINTS:
            auth = me if endpoint.endswith("/me") else headers
            for _ in range(3):  # warm-up: connections, plans, caches
                client.get(f"/api/projects/1{endpoint}", headers=auth).raise_for_status()
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                client.get(f"/api/projects/1{endpoint}", headers=auth).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            rows.append((endpoint, statistics.median(times), p95, times[-1]))
    app.state.engine.dispose()
    costs = write_costs(url)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{args.images} images, {args.masks} masks, PostgreSQL, {args.repeat} requests each; "
        f"load average {load} on {os.cpu_count()} CPUs\n"
    )
    print("| endpoint | p50 ms | p95 ms | max ms |")
    print("| --- | ---: | ---: | ---: |")
    for endpoint, p50, p95, worst in rows:
        print(f"| GET /api/projects/1{endpoint} | {p50:.1f} | {p95:.1f} | {worst:.1f} |")
    print("\n| write (rolled back) | ms with rollup triggers | ms without |")
    print("| --- | ---: | ---: |")
    for what, on, off in costs:
        print(f"| {what} | {on:.2f} | {off:.2f} |")


if __name__ == "__main__":
    main()
