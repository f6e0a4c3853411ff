"""Alembic: upgrade from empty, downgrade to base, and the models match the migrations, on both databases.

The checks look at whatever tables `Base.metadata` holds and whatever migrations exist, so they keep
working (and keep guarding) as later migrations add tables and columns.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import JSON, Connection, DateTime, Float, Integer, String, column, inspect, table, text
from sqlalchemy.exc import IntegrityError

from backend.core.config import Settings
from backend.core.db import make_engine
from backend.core.migrations import REPO_ROOT, alembic_config, downgrade, upgrade
from backend.main import create_app  # imports every router, so every model module is loaded
from backend.tables import Base


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_one_linear_history_with_a_single_head(empty_database_url):
    script = ScriptDirectory.from_config(alembic_config(empty_database_url))
    assert len(script.get_heads()) == 1, f"several heads: {script.get_heads()} (merge them)"


def test_upgrade_from_empty_creates_every_table_and_downgrade_removes_them(empty_database_url):
    assert _tables(empty_database_url) == set()
    upgrade(empty_database_url)
    assert _tables(empty_database_url) == set(Base.metadata.tables) | {"alembic_version"}
    downgrade(empty_database_url, "base")
    assert _tables(empty_database_url) == {"alembic_version"}
    upgrade(empty_database_url)  # and back up again: downgrades leave nothing behind that blocks it
    assert set(Base.metadata.tables) <= _tables(empty_database_url)


def test_models_match_the_migrations(empty_database_url):
    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ (write a migration): {diff}"


def test_the_app_never_creates_tables(empty_database_url, tmp_path):
    app = create_app(Settings(data_dir=tmp_path, database_url=empty_database_url, secret_key="k" * 40))
    with TestClient(app) as client:
        client.get("/openapi.json")
    app.state.engine.dispose()
    assert _tables(empty_database_url) == set()


def test_alembic_command_line_uses_the_same_configuration(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO_ROOT / "alembic.ini"), "upgrade", "head"],
        cwd=tmp_path,
        env={"DATAENGINE_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert set(Base.metadata.tables) <= _tables(url)


def _insert_0009_masks(conn: Connection) -> dict[str, int]:
    """A user, a project, an image and one mask of each kind 0009's writers stored; their ids by kind."""
    now = datetime.now(UTC)
    conn.execute(
        text(
            "INSERT INTO users (id, username, password_hash, role, is_active, created_at) "
            "VALUES (1, 'ann', 'x', 'annotator', true, :now)"
        ),
        {"now": now},
    )
    conn.execute(
        text(
            "INSERT INTO projects (id, name, description, stage, settings, created_at) "
            "VALUES (1, 'p', '', 'assisted_manual', '{}', :now)"
        ),
        {"now": now},
    )
    conn.execute(
        text(
            "INSERT INTO images (id, project_id, file_name, storage_key, sha256, width, height, size_bytes, status, "
            "stage_done, created_at) VALUES (1, 1, 'a.png', 'k', 's', 4, 4, 1, 'new', '{}', :now)"
        ),
        {"now": now},
    )
    kinds = {
        "annotated": ("manual", {"points": [[1, 1]], "labels": [1]}),
        "unprompted": ("manual", None),
        "no_prompt": ("manual", {}),
        "review": ("manual", {"review_of": 3}),
        "detector": ("detector", {"box": [0.0, 0.0, 2.0, 2.0], "detector_score": 0.9, "detector_version_id": 7}),
        "auto": ("auto", {"model_version_id": 3, "job_id": 12}),
        "auto_bare": ("auto", None),
        "imported": ("manual", {"import": {"format": "coco", "annotation_id": 5}}),
    }
    masks = table(
        "masks",
        column("id", Integer()),
        column("image_id", Integer()),
        column("project_id", Integer()),
        column("rle", JSON()),
        column("bbox", JSON()),
        column("area", Integer()),
        column("source", String()),
        column("stage", String()),
        column("prompts", JSON(none_as_null=True)),
        column("author_id", Integer()),
        column("review_status", String()),
        column("created_at", DateTime(timezone=True)),
        column("updated_at", DateTime(timezone=True)),
    )
    ids = {}
    for number, (kind, (source, prompts)) in enumerate(kinds.items(), start=1):
        conn.execute(
            masks.insert().values(
                id=number,
                image_id=1,
                project_id=1,
                rle={"size": [4, 4], "counts": "04?"},
                bbox=[0.0, 0.0, 1.0, 4.0],
                area=4,
                source=source,
                stage="assisted_manual",
                prompts=prompts,
                author_id=1,
                review_status="none",
                created_at=now,
                updated_at=now,
            )
        )
        ids[kind] = number
    return ids


def _column(conn: Connection, name: str) -> dict[int, Any]:
    rows = conn.execute(text(f"SELECT id, {name} FROM masks ORDER BY id")).all()
    return {row[0]: json.loads(row[1]) if isinstance(row[1], str) else row[1] for row in rows}


def _totals(conn: Connection) -> set[tuple[Any, ...]]:
    return set(conn.execute(text("SELECT source, author_key, masks FROM mask_totals WHERE masks > 0")).all())


def test_0010_moves_prompts_into_provenance_and_back(empty_database_url):
    """Existing rows keep what `prompts` said, as provenance; `imported` is a source; downgrade restores both."""
    upgrade(empty_database_url, "0009")
    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            ids = _insert_0009_masks(conn)
            prompts_before = _column(conn, "prompts")
        upgrade(empty_database_url, "0010")
        with engine.begin() as conn:
            assert "prompts" not in {c["name"] for c in inspect(conn).get_columns("masks")}
            provenance = _column(conn, "provenance")
            assert provenance == {
                ids["annotated"]: {"origin": "annotated", "prompts": {"points": [[1, 1]], "labels": [1]}},
                ids["unprompted"]: {"origin": "annotated"},
                ids["no_prompt"]: {"origin": "annotated", "prompts": {}},
                ids["review"]: {"origin": "review_fix", "review_of": 3},
                ids["detector"]: {
                    "origin": "detector",
                    "box": [0.0, 0.0, 2.0, 2.0],
                    "detector_score": 0.9,
                    "detector_version_id": 7,
                },
                ids["auto"]: {"origin": "auto", "model_version_id": 3, "job_id": 12},
                ids["auto_bare"]: {"origin": "auto"},
                ids["imported"]: {"origin": "imported", "format": "coco", "annotation_id": 5},
            }
            # The new source is allowed, and the rollup triggers survived the table copy.
            conn.execute(text("UPDATE masks SET source = 'imported' WHERE id = :id"), {"id": ids["imported"]})
            assert ("imported", 1, 1) in _totals(conn)
            with pytest.raises(IntegrityError), conn.begin_nested():
                conn.execute(text("UPDATE masks SET source = 'drawn' WHERE id = :id"), {"id": ids["imported"]})
        downgrade(empty_database_url, "0009")
        with engine.begin() as conn:
            assert "provenance" not in {c["name"] for c in inspect(conn).get_columns("masks")}
            assert _column(conn, "prompts") == prompts_before
            assert conn.scalar(text("SELECT source FROM masks WHERE id = :id"), {"id": ids["imported"]}) == "manual"
            assert _totals(conn) == {("manual", 1, 5), ("detector", 1, 1), ("auto", 1, 2)}
            with pytest.raises(IntegrityError), conn.begin_nested():
                conn.execute(text("UPDATE masks SET source = 'imported' WHERE id = :id"), {"id": ids["imported"]})
    finally:
        engine.dispose()


def _jobs(conn: Connection, *columns: str) -> dict[int, tuple[Any, ...]]:
    rows = conn.execute(text(f"SELECT id, {', '.join(columns)} FROM jobs ORDER BY id")).all()
    return {row[0]: tuple(json.loads(v) if isinstance(v, str) else v for v in row[1:]) for row in rows}


def test_0011_moves_job_inputs_and_attempts_out_of_result_and_back(empty_database_url):
    """Each kind's inputs go to params and the attempt counter to attempts; a succeeded job's result keeps
    what its work reported (inputs included), an unfinished one's only its live figures; downgrade merges."""
    upgrade(empty_database_url, "0010")
    jobs = table(
        "jobs",
        column("id", Integer()),
        column("kind", String()),
        column("status", String()),
        column("progress", Float()),
        column("message", String()),
        column("result", JSON(none_as_null=True)),
        column("created_at", DateTime(timezone=True)),
    )
    training = {"model_version_id": 3, "params": {"steps": 5}, "mask_watermark": 9, "reason": "by hand"}
    rows = {
        1: ("embed", "queued", {"attempts": 0, "model_version_id": 3}),
        2: ("train", "running", {"attempts": 2, **training, "step": 4, "loss_curve": [[1, 0.5]]}),
        3: ("auto", "succeeded", {"model_version_id": 3, "params": {}, "masks": 7, "attempts": 1}),
        4: ("export", "failed", {"attempts": 1, "format": "coco", "include_images": False}),
        5: ("legacy", "succeeded", {"attempts": 1, "x": 1}),  # a kind 0011 does not know: only attempts move
        6: ("detect", "cancelled", None),
    }
    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            for job_id, (kind, status, result) in rows.items():
                conn.execute(
                    jobs.insert().values(
                        id=job_id,
                        kind=kind,
                        status=status,
                        progress=0.0,
                        message="",
                        result=result,
                        created_at=datetime.now(UTC),
                    )
                )
        upgrade(empty_database_url, "0011")
        with engine.begin() as conn:
            assert _jobs(conn, "params", "attempts", "result") == {
                1: ({"model_version_id": 3}, 0, None),
                2: (training, 2, {"step": 4, "loss_curve": [[1, 0.5]]}),
                3: ({"model_version_id": 3, "params": {}}, 1, {"model_version_id": 3, "params": {}, "masks": 7}),
                4: ({"format": "coco", "include_images": False}, 1, None),
                5: ({}, 1, {"x": 1}),
                6: ({}, 0, None),
            }
            conn.execute(
                text(
                    "INSERT INTO jobs (id, kind, status, progress, message, created_at) "
                    "VALUES (7, 'embed', 'queued', 0, '', :now)"
                ),
                {"now": datetime.now(UTC)},
            )
            assert _jobs(conn, "params", "attempts")[7] == ({}, 0)  # the server defaults
            conn.execute(text("DELETE FROM jobs WHERE id = 7"))
        downgrade(empty_database_url, "0010")
        with engine.begin() as conn:
            assert not {"params", "attempts"} & {c["name"] for c in inspect(conn).get_columns("jobs")}
            before = {job_id: (result,) for job_id, (_, _, result) in rows.items()}
            assert _jobs(conn, "result") == {**before, 6: ({"attempts": 0},)}  # as 0010's create_job wrote it
    finally:
        engine.dispose()


def test_0014_backfills_the_uncovered_fraction_from_live_masks(empty_database_url):
    """An image with two overlapping live masks and a deleted one covering it all: the union of the live
    ones; an image without masks: 1; downgrade drops the column."""
    from tests.backend.stage3_helpers import box_mask, rle_of

    upgrade(empty_database_url, "0013")
    now = datetime.now(UTC)
    live = [rle_of(box_mask(10, 10, *box)) for box in ((0, 0, 5, 10), (3, 0, 8, 10))]  # union 8 rows of 10
    deleted = rle_of(box_mask(10, 10, 0, 0, 10, 10))
    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO projects (id, name, description, stage, settings, created_at) "
                    "VALUES (1, 'p', '', 'assisted_manual', '{}', :now)"
                ),
                {"now": now},
            )
            for image_id in (1, 2):
                conn.execute(
                    text(
                        "INSERT INTO images (id, project_id, file_name, storage_key, sha256, width, height, size_bytes, "
                        "status, stage_done, created_at) VALUES (:id, 1, 'f', 'k', :sha, 10, 10, 1, 'new', '{}', :now)"
                    ),
                    {"id": image_id, "sha": str(image_id), "now": now},
                )
            for rle, deleted_at in ((live[0], None), (live[1], None), (deleted, now)):
                conn.execute(
                    text(
                        "INSERT INTO masks (image_id, project_id, rle, bbox, area, source, stage, review_status, "
                        "created_at, updated_at, provenance, deleted_at) VALUES (1, 1, :rle, '[0, 0, 1, 1]', 1, "
                        "'manual', 'assisted_manual', 'none', :now, :now, '{\"origin\": \"annotated\"}', :deleted)"
                    ),
                    {"rle": json.dumps(rle), "now": now, "deleted": deleted_at},
                )
        upgrade(empty_database_url, "0014")
        with engine.begin() as conn:
            rows = dict(conn.execute(text("SELECT id, uncovered_fraction FROM images ORDER BY id")).all())
            assert rows == {1: pytest.approx(0.2), 2: 1.0}
        downgrade(empty_database_url, "0013")
        with engine.begin() as conn:
            assert "uncovered_fraction" not in {c["name"] for c in inspect(conn).get_columns("images")}
    finally:
        engine.dispose()
