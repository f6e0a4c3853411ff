"""Alembic environment: migrates the database named by the caller, comparing against `Base.metadata`.

The URL comes from, in order: `config.attributes["connection"]` (an open connection handed over by
`backend.core.migrations`), the `sqlalchemy.url` main option, then `Settings()` (env `DATAENGINE_*`).
SQLite runs in batch mode so ALTERs become copy-and-move.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from backend.core.config import Settings
from backend.core.db import make_engine
from backend.tables import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode copies a table and drops the old one; with foreign keys on, that DROP deletes the
        # rows referencing it (ON DELETE CASCADE: every mask of the images table). SQLite ignores this
        # pragma inside a transaction, so it comes before; the keys are checked once at the end instead.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
            raise RuntimeError(f"the migration left rows with dangling foreign keys: {broken[:10]}")


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url") or Settings().db_url
    context.configure(
        url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=url.startswith("sqlite")
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or Settings().db_url
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
