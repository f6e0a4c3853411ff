"""Alembic: upgrade from empty, downgrade to base, and the models match the migrations, on both databases.

The checks look at whatever tables `Base.metadata` holds and whatever migrations exist, so they keep
working (and keep guarding) as later migrations add tables and columns.
"""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import inspect

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
