"""Dashboard latency, storage and bulk-load rate on PostgreSQL at several sizes in one run, through the real app.

For each size (default 1 000 000 and 10 000 000 masks, 100 masks per image) it creates (drops first)
the database `dataengine_bench_<masks>` on the server named by `DATAENGINE_BENCH_POSTGRES_URL` (default: the
test server, postgresql+psycopg://postgres@127.0.0.1:5432/test), migrates it with Alembic, fills it in
SQL (INSERT ... SELECT generate_series: one project, 20 annotators, the images, masks of all stages and
sources 2.5 s apart, ~1.3 kB of RLE-like text each, 2% soft-deleted, review rows, model rounds, jobs)
with the triggers off (`session_replication_role = replica`: a bulk load), builds the rollups with
`rebuild_rollups` (what `dataengine rebuild-rollups` does), runs VACUUM ANALYZE (as autovacuum would),
then measures
- GET latency of every dashboard endpoint through `create_app` + TestClient with a manager's token
  (an annotator's for /me): p50/p95/max over `--repeat` requests after warm-up, the sizes' requests
  interleaved (one app per size, one request to each in turn) so that all sizes share the same load;
- the database's bytes per mask (all of it, the masks table, its RLE column, the rollups);
- the bulk-load rate of the automatic stage's write path: `backend.masks.writer.insert_masks` (a
  cached executemany that insertmanyvalues sends as one multi-row INSERT per image of 100 masks) plus
  the image's done mark and a commit per image, with the rollup triggers on and off, and against the
  reference of the writer before 2026-12-02 (`insert(Mask).values(rows)`, a new statement compiled per
  image) with the triggers on;
- what the triggers add to plain SQL INSERTs (one-row statements and one 20 000-row INSERT, rolled back).
Prints one markdown table per size and one comparing the p95 and p50 across sizes (ratio to the first).
Goal: every endpoint under 100 ms p95 at 10M masks and within 1.3x of its 1M figure.

    python benchmarks/dashboard.py [--sizes 1000000 10000000] [--repeat 30] [--keep]

`--keep` reuses a size's database if an earlier run filled it (a 10M fill takes half an hour here):
it is migrated to head first, so a later migration's rollups are built by that migration, as in a
deployment, then VACUUM ANALYZE; a size without a database is built.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from pycocotools import mask as mask_util
from sqlalchemy import create_engine, insert, null, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.db import make_engine
from backend.core.migrations import upgrade
from backend.core.security import create_access_token
from backend.dashboard.rollups import ROLLUPS, rebuild_rollups
from backend.main import create_app
from backend.masks import provenance, writer
from backend.masks.coverage import refresh_coverage
from backend.masks.rle import CheckedMask, checked_mask
from backend.masks.writer import NewMask, insert_masks
from backend.tables import Image, ImageStatus, Mask, MaskSource, Stage
from backend.tables.base import utcnow

SERVER = os.environ.get("DATAENGINE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NAME = "dataengine_bench"
ANNOTATORS = 20
MASKS_PER_IMAGE = 100
HEIGHT, WIDTH = 1000, 1500

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
    # mask g: manual 60% (author by g), detector 10%, auto 30%; ~1.3 kB of RLE-like text per mask
    "INSERT INTO masks (image_id, project_id, rle, bbox, area, source, stage, provenance, seconds_spent, clicks, "
    "author_id, review_status, prefill_outcome, deleted_at, created_at, updated_at) "
    "SELECT 1 + g % :images, 1, json_build_object('size', json_build_array(1000, 1500), 'counts', repeat(md5(g::text), 40)), "
    "'[0, 0, 10, 10]', 100 + g % 5000, "
    "CASE WHEN g % 10 < 6 THEN 'manual' WHEN g % 10 = 6 THEN 'detector' ELSE 'auto' END, "
    "CASE WHEN g % 10 < 4 THEN 'assisted_manual' WHEN g % 10 < 7 THEN 'semi_automatic' ELSE 'fully_automatic' END, "
    'CASE WHEN g % 10 < 6 THEN \'{"origin": "annotated"}\' WHEN g % 10 = 6 THEN \'{"origin": "detector"}\' '
    'ELSE \'{"origin": "auto"}\' END::json, '
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

# What the rollup triggers cost plain SQL writers: the same inserts with the triggers on and off, rolled back.
ONE_MASK = (
    "INSERT INTO masks (image_id, project_id, rle, bbox, area, source, stage, provenance, seconds_spent, clicks, "
    'author_id, review_status, created_at, updated_at) VALUES (:image, 1, \'{"size": [1, 1], "counts": "1"}\', '
    "'[0, 0, 1, 1]', 1, 'manual', 'semi_automatic', '{\"origin\": \"annotated\"}', 12.5, 3, 2, 'none', now(), now())"
)
BULK = (
    "INSERT INTO masks (image_id, project_id, rle, bbox, area, source, stage, provenance, seconds_spent, clicks, "
    "author_id, review_status, created_at, updated_at) SELECT 1 + g % :images, 1, '{}', '[0, 0, 1, 1]', 1, 'auto', "
    "'fully_automatic', '{\"origin\": \"auto\"}', NULL, NULL, NULL, 'none', now(), now() FROM generate_series(1, :n) g"
)
ENDPOINTS = [
    "/dashboard",
    "/dashboard/me",
    "/dashboard/annotators",
    "/dashboard/timeline?bucket=day",
    "/dashboard/timeline?bucket=hour",
]


def exists(server: str, name: str) -> bool:
    admin = create_engine(server)
    with admin.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is not None
    admin.dispose()
    return found


def reuse(url: str) -> float:
    """Migrate a kept database to head and VACUUM ANALYZE it; returns the seconds migrating."""
    start = time.perf_counter()
    upgrade(url)
    seconds = time.perf_counter() - start
    engine = make_engine(url)
    vacuum(engine)
    engine.dispose()
    return seconds


def build(server: str, url: str, images: int, masks: int) -> tuple[float, float]:
    """Create and fill the database; returns (seconds filling, seconds rebuilding the rollups)."""
    name = make_url(url).database
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
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
    vacuum(engine)
    engine.dispose()
    return filled - start, rebuilt - filled


def vacuum(engine: Any) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def storage(url: str) -> dict[str, float]:
    """Bytes per live-or-deleted mask row: the database, the masks table (heap, TOAST, indexes), its RLE values,
    the rollup tables together."""
    engine = make_engine(url)
    rollup_tables = sorted({r.table for r in ROLLUPS})
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM masks")).scalar_one()
        figures = conn.execute(
            text(
                "SELECT pg_database_size(current_database()), pg_total_relation_size('masks'), "
                "pg_relation_size('masks'), pg_indexes_size('masks'), "
                "(SELECT avg(pg_column_size(rle)) FROM masks TABLESAMPLE SYSTEM (1))"
            )
        ).one()
        rollups = sum(conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar_one() for t in rollup_tables)
    engine.dispose()
    database, table, heap, indexes, rle = figures
    return {
        "database": database / n,
        "masks table": table / n,
        "heap": heap / n,
        "indexes": indexes / n,
        "RLE value": float(rle),
        "rollups": rollups / n,
    }


def endpoint_latency(urls: list[str], repeat: int) -> list[list[tuple[str, float, float, float]]]:
    """(endpoint, p50, p95, max ms) per database in `urls`, their requests interleaved (one to each database
    in turn), so every size sees the same load from whatever else runs on the machine meanwhile."""
    settings = [
        Settings(database_url=u, secret_key="bench-" + "x" * 40, data_dir="/tmp/dataengine_bench") for u in urls
    ]
    apps = [create_app(s) for s in settings]
    key = settings[0].ensure_secret_key()
    manager = {"Authorization": "Bearer " + create_access_token(1, key, 60)}
    annotator = {"Authorization": "Bearer " + create_access_token(2, key, 60)}
    rows: list[list[tuple[str, float, float, float]]] = [[] for _ in urls]
    with ExitStack() as stack:
        clients = [stack.enter_context(TestClient(app)) for app in apps]
        for endpoint in ENDPOINTS:
            auth = annotator if endpoint.endswith("/me") else manager
            for client in clients:
                for _ in range(3):  # warm-up: connections, plans, caches
                    client.get(f"/api/projects/1{endpoint}", headers=auth).raise_for_status()
            times: list[list[float]] = [[] for _ in urls]
            for _ in range(repeat):
                for i, client in enumerate(clients):
                    t = time.perf_counter()
                    client.get(f"/api/projects/1{endpoint}", headers=auth).raise_for_status()
                    times[i].append((time.perf_counter() - t) * 1000)
            for i, ts in enumerate(times):
                ts.sort()
                p95 = ts[min(len(ts) - 1, round(0.95 * (len(ts) - 1)))]
                rows[i].append((endpoint, statistics.median(ts), p95, ts[-1]))
    for app in apps:
        app.state.engine.dispose()
    return rows


def auto_masks(count: int = MASKS_PER_IMAGE, seed: int = 0) -> list[CheckedMask]:
    """`count` ellipses of assorted sizes on a 1000 x 1500 image, as the writer receives them (checked RLE)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    out = []
    for _ in range(count):
        cy, cx = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH)
        ry, rx = rng.uniform(5, 200, size=2)
        pixels = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        rle = mask_util.encode(np.asfortranarray(pixels.astype(np.uint8)))
        out.append(checked_mask({"size": rle["size"], "counts": rle["counts"].decode()}, HEIGHT, WIDTH))
    return out


def values_insert(db: Session, image: Image, masks: Sequence[NewMask]) -> int:
    """The reference: `insert_masks` as it was before 2026-12-02, one `insert(Mask).values(rows)` per image."""
    now = utcnow()
    rows = [writer._row(image, new, checked_mask(new.mask, image.height, image.width)) for new in masks]
    for row in rows:
        row.update({k: null() for k in ("point_coords", "crop_box") if row[k] is None}, created_at=now, updated_at=now)
    db.execute(insert(Mask).values(rows))
    refresh_coverage(db, image.id)
    return len(rows)


def bulk_load(url: str, images: int = 100) -> list[tuple[str, float]]:
    """Masks/s through the automatic stage's write path, rollup triggers on and off, and the previous
    writer's form with them on: for each of `images` fresh images, 100 masks written, the image marked
    done, a commit. The rows are removed after."""
    masks = [
        NewMask(mask=m, source=MaskSource.auto, stage=Stage.fully_automatic, provenance=provenance.auto({"job_id": 1}))
        for m in auto_masks()
    ]
    engine = make_engine(url)
    out = []
    for label, replica, write in (
        ("insert_masks, rollup triggers on", False, insert_masks),
        ("insert_masks, triggers off (replica)", True, insert_masks),
        ("reference: insert(Mask).values(rows) per image, triggers on", False, values_insert),
    ):
        with engine.connect() as conn, Session(bind=conn) as db:  # one connection: the SET holds throughout
            if replica:
                db.execute(text("SET session_replication_role = replica"))
            first = db.execute(text("SELECT coalesce(max(id), 0) + 1 FROM images")).scalar_one()
            db.execute(
                text(
                    "INSERT INTO images (project_id, file_name, storage_key, sha256, width, height, size_bytes, "
                    "status, stage_done, created_at) SELECT 1, 'bulk' || g, 'bulk' || g, lpad('b' || g, 64, '0'), "
                    f"{WIDTH}, {HEIGHT}, 1, 'new', '{{}}', now() FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) g"
                ),
                {"first": first, "last": first + images - 1},
            )
            db.commit()
            batch = db.scalars(select(Image).where(Image.id >= first).order_by(Image.id)).all()
            start = time.perf_counter()
            for image in batch:
                write(db, image, masks)
                image.status = ImageStatus.done
                db.commit()
            seconds = time.perf_counter() - start
            out.append((label, images * len(masks) / seconds))
            db.execute(text("DELETE FROM masks WHERE image_id >= :first"), {"first": first})
            db.execute(text("DELETE FROM images WHERE id >= :first"), {"first": first})
            db.commit()
    engine.dispose()
    return out


def write_costs(url: str, images: int, singles: int = 300, bulk: int = 20_000) -> list[tuple[str, float, float]]:
    """(what, ms with triggers, ms without) for `singles` one-row INSERT statements and one `bulk`-row INSERT."""
    engine = make_engine(url)
    out = []
    for what, run in [
        (
            f"{singles} one-mask INSERTs (per insert)",
            lambda c: [c.execute(text(ONE_MASK), {"image": 1 + i % images}) for i in range(singles)],
        ),
        (f"one INSERT of {bulk} masks", lambda c: c.execute(text(BULK), {"n": bulk, "images": images})),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="masks per run")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="reuse the sizes' filled databases (migrated to head)")
    args = parser.parse_args()
    urls = {}
    for masks in args.sizes:
        images = max(1, masks // MASKS_PER_IMAGE)
        url = make_url(SERVER).set(database=f"{NAME}_{masks}").render_as_string(hide_password=False)
        if args.keep and exists(SERVER, f"{NAME}_{masks}"):
            print(f"\nkept {images} images and {masks} masks; migrated to head in {reuse(url):.0f} s")
        else:
            fill, rebuild = build(SERVER, url, images, masks)
            print(f"\nfilled {images} images and {masks} masks in {fill:.0f} s; rollups rebuilt in {rebuild:.0f} s")
        urls[masks] = url
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    latencies = dict(zip(urls, endpoint_latency(list(urls.values()), args.repeat), strict=True))
    print(f"\nlatency measured with the sizes' requests interleaved; load average {load} on {os.cpu_count()} CPUs")
    for masks, url in urls.items():
        images = max(1, masks // MASKS_PER_IMAGE)
        sizes = storage(url)
        loads = bulk_load(url)
        costs = write_costs(url, images)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"\n{images} images, {masks} masks, PostgreSQL, {args.repeat} requests each; "
            f"load average {load} on {os.cpu_count()} CPUs\n"
        )
        print("| endpoint | p50 ms | p95 ms | max ms |\n| --- | ---: | ---: | ---: |")
        for endpoint, p50, p95, worst in latencies[masks]:
            print(f"| GET /api/projects/1{endpoint} | {p50:.1f} | {p95:.1f} | {worst:.1f} |")
        print("\n| bytes per mask | " + " | ".join(sizes) + " |\n| --- |" + " ---: |" * len(sizes))
        print("| | " + " | ".join(f"{v:.0f}" for v in sizes.values()) + " |")
        print("\n| bulk load: 100 masks per image, a commit per image | masks/s |\n| --- | ---: |")
        for label, rate in loads:
            print(f"| {label} | {rate:.0f} |")
        print("\n| SQL write (rolled back) | ms with rollup triggers | ms without |\n| --- | ---: | ---: |")
        for what, on, off in costs:
            print(f"| {what} | {on:.2f} | {off:.2f} |")
    if len(urls) > 1:
        sizes_run = list(urls)
        print(
            "\n| endpoint | "
            + " | ".join(f"p95 ms at {n:,}" for n in sizes_run)
            + " | ratio | "
            + " | ".join(f"p50 ms at {n:,}" for n in sizes_run)
            + " | ratio |"
        )
        print("| --- |" + " ---: |" * (2 * len(sizes_run) + 2))
        for k, endpoint in enumerate(ENDPOINTS):
            p95 = [latencies[n][k][2] for n in sizes_run]
            p50 = [latencies[n][k][1] for n in sizes_run]
            print(
                f"| GET {endpoint} | "
                + " | ".join(f"{v:.1f}" for v in p95)
                + f" | {p95[-1] / p95[0]:.2f}x | "
                + " | ".join(f"{v:.1f}" for v in p50)
                + f" | {p50[-1] / p50[0]:.2f}x |"
            )


if __name__ == "__main__":
    main()
