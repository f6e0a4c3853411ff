"""The triggers that keep the dashboard rollups (`backend/models/dashboard.py`) exact, and their rebuild.

One row trigger on `masks` (PostgreSQL: one PL/pgSQL function; SQLite: one trigger per operation) runs
inside the writing transaction: on INSERT it adds the new row's contribution, on DELETE it subtracts the
old row's, on UPDATE of a column the rollups depend on it does both. So every write path (ORM flushes,
Core `update(Mask)`, raw SQL, FK cascades) keeps them right with no code of its own; a rolled-back
transaction rolls the rollups back with it. Subtracting only UPDATEs existing rows (never inserts), so
a cascade that already removed a project's rollup rows is harmless.

The same expressions build the trigger bodies and `rebuild_rollups` (recompute from `masks`: after a
bulk load that bypassed the triggers, e.g. with `session_replication_role = replica`, or to repair), so
the two cannot disagree. Migration 0004 installs the triggers with `install`; a change to the SQL
here needs a new migration that calls `uninstall` then `install`.
"""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from backend.models.dashboard import SECONDS_BUCKETS_PER_SECOND

# Columns of masks whose change moves a mask between rollup rows (UPDATE OF ... fires only for these).
WATCHED = ["project_id", "image_id", "stage", "source", "author_id", "seconds_spent", "clicks",
           "prefill_outcome", "deleted_at", "created_at"]
STATS_KEY = ["project_id", "hour", "stage", "source", "author_key"]
STATS_VALUES = ["masks", "timed", "seconds", "clicked", "clicks", "prefill_kept", "prefill_corrected", "prefill_deleted"]


def _hour(dialect: str, m: str) -> str:
    """SQL text of the UTC hour of `m.created_at` as 'YYYY-MM-DDTHH:00:00'."""
    if dialect == "postgresql":
        return f"""to_char(date_trunc('hour', {m}.created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:00:00')"""
    return f"strftime('%Y-%m-%dT%H:00:00', {m}.created_at)"


def _bucket(dialect: str, m: str) -> str:
    """SQL text of floor(m.seconds_spent * 4) as an integer (SQLite has no floor(): truncate, then fix negatives)."""
    scaled = f"({m}.seconds_spent * {SECONDS_BUCKETS_PER_SECOND})"
    if dialect == "postgresql":
        return f"CAST(floor{scaled} AS BIGINT)"
    return f"(CAST({scaled} AS INTEGER) - ({scaled} < CAST({scaled} AS INTEGER)))"


def _stats_row(dialect: str, m: str) -> dict[str, str]:
    """SQL text of each mask_stats column for the single mask row `m` (NEW, OLD or masks)."""
    live = f"{m}.deleted_at IS NULL"
    return {
        "project_id": f"{m}.project_id", "hour": _hour(dialect, m), "stage": f"{m}.stage", "source": f"{m}.source",
        "author_key": f"COALESCE({m}.author_id, 0)",
        "masks": f"CASE WHEN {live} THEN 1 ELSE 0 END",
        "timed": f"CASE WHEN {live} AND {m}.seconds_spent IS NOT NULL THEN 1 ELSE 0 END",
        "seconds": f"CASE WHEN {live} THEN COALESCE({m}.seconds_spent, 0) ELSE 0 END",
        "clicked": f"CASE WHEN {live} AND {m}.clicks IS NOT NULL THEN 1 ELSE 0 END",
        "clicks": f"CASE WHEN {live} THEN COALESCE({m}.clicks, 0) ELSE 0 END",
        **{f"prefill_{o}": f"CASE WHEN {m}.prefill_outcome = '{o}' THEN 1 ELSE 0 END"
           for o in ("kept", "corrected", "deleted")},
    }


def _add(dialect: str, m: str) -> list[str]:
    """Statements adding the contribution of row `m` (upserts)."""
    row = _stats_row(dialect, m)
    live = f"{m}.deleted_at IS NULL"
    cols = STATS_KEY + STATS_VALUES
    updates = ", ".join(f"{c} = mask_stats.{c} + excluded.{c}" for c in STATS_VALUES)
    return [
        f"INSERT INTO mask_stats ({', '.join(cols)}) SELECT {', '.join(row[c] for c in cols)} WHERE true "
        f"ON CONFLICT ({', '.join(STATS_KEY)}) DO UPDATE SET {updates}",
        f"INSERT INTO mask_seconds (project_id, author_key, bucket, masks) "
        f"SELECT {m}.project_id, COALESCE({m}.author_id, 0), {_bucket(dialect, m)}, 1 "
        f"WHERE {live} AND {m}.seconds_spent IS NOT NULL "
        f"ON CONFLICT (project_id, author_key, bucket) DO UPDATE SET masks = mask_seconds.masks + 1",
        f"INSERT INTO image_mask_counts (project_id, image_id, author_key, masks) "
        f"SELECT {m}.project_id, {m}.image_id, COALESCE({m}.author_id, 0), 1 WHERE {live} "
        f"ON CONFLICT (project_id, image_id, author_key) DO UPDATE SET masks = image_mask_counts.masks + 1",
    ]


def _subtract(dialect: str, m: str) -> list[str]:
    """Statements removing the contribution of row `m` (updates of rows that exist since `m` was added)."""
    row = _stats_row(dialect, m)
    live = f"{m}.deleted_at IS NULL"
    author = f"COALESCE({m}.author_id, 0)"
    return [
        f"UPDATE mask_stats SET {', '.join(f'{c} = {c} - ({row[c]})' for c in STATS_VALUES)} "
        f"WHERE {' AND '.join(f'{c} = {row[c]}' for c in STATS_KEY)}",
        f"UPDATE mask_seconds SET masks = masks - 1 WHERE {live} AND {m}.seconds_spent IS NOT NULL "
        f"AND project_id = {m}.project_id AND author_key = {author} AND bucket = {_bucket(dialect, m)}",
        f"UPDATE image_mask_counts SET masks = masks - 1 WHERE {live} "
        f"AND project_id = {m}.project_id AND image_id = {m}.image_id AND author_key = {author}",
    ]


def install_statements(dialect: str) -> list[str]:
    """DDL creating the rollup triggers on `dialect` ("postgresql" or "sqlite")."""
    if dialect == "postgresql":
        sub = ";\n    ".join(_subtract(dialect, "OLD"))
        add = ";\n    ".join(_add(dialect, "NEW"))
        return [
            "CREATE FUNCTION masks_rollups() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
            f"  IF TG_OP <> 'INSERT' THEN\n    {sub};\n  END IF;\n"
            f"  IF TG_OP <> 'DELETE' THEN\n    {add};\n  END IF;\n  RETURN NULL;\nEND\n$$",
            f"CREATE TRIGGER masks_rollups AFTER INSERT OR DELETE OR UPDATE OF {', '.join(WATCHED)} ON masks "
            "FOR EACH ROW EXECUTE FUNCTION masks_rollups()",
        ]
    if dialect == "sqlite":
        def body(statements: list[str]) -> str:
            return "".join(f"  {s};\n" for s in statements)
        return [
            f"CREATE TRIGGER masks_rollups_insert AFTER INSERT ON masks BEGIN\n{body(_add(dialect, 'NEW'))}END",
            f"CREATE TRIGGER masks_rollups_delete AFTER DELETE ON masks BEGIN\n{body(_subtract(dialect, 'OLD'))}END",
            f"CREATE TRIGGER masks_rollups_update AFTER UPDATE OF {', '.join(WATCHED)} ON masks BEGIN\n"
            f"{body(_subtract(dialect, 'OLD') + _add(dialect, 'NEW'))}END",
        ]
    raise ValueError(f"no rollup triggers for database dialect {dialect!r}")


def uninstall_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return ["DROP TRIGGER IF EXISTS masks_rollups ON masks", "DROP FUNCTION IF EXISTS masks_rollups()"]
    return [f"DROP TRIGGER IF EXISTS masks_rollups_{op}" for op in ("insert", "delete", "update")]


def install(conn: Connection) -> None:
    for statement in install_statements(conn.dialect.name):
        conn.exec_driver_sql(statement)


def uninstall(conn: Connection) -> None:
    for statement in uninstall_statements(conn.dialect.name):
        conn.exec_driver_sql(statement)


def rebuild_rollups(db: Session | Connection, project_id: int) -> None:
    """Recompute the project's rollup rows from `masks` (in the caller's transaction; not committed)."""
    conn = db.connection() if isinstance(db, Session) else db
    dialect = conn.dialect.name
    row = _stats_row(dialect, "masks")
    key = ", ".join(row[c] for c in STATS_KEY)
    sums = ", ".join(f"SUM({row[c]})" for c in STATS_VALUES)
    live = "masks.deleted_at IS NULL"
    p = int(project_id)  # inlined: the SQL holds literal colons (hour formats) that bind syntax would take
    for table in ("mask_stats", "mask_seconds", "image_mask_counts"):
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE project_id = {p}")
    conn.exec_driver_sql(f"INSERT INTO mask_stats ({', '.join(STATS_KEY + STATS_VALUES)}) "
                         f"SELECT {key}, {sums} FROM masks WHERE masks.project_id = {p} GROUP BY {key}")
    bucket = _bucket(dialect, "masks")
    conn.exec_driver_sql(f"INSERT INTO mask_seconds (project_id, author_key, bucket, masks) "
                         f"SELECT masks.project_id, COALESCE(masks.author_id, 0), {bucket}, COUNT(*) FROM masks "
                         f"WHERE masks.project_id = {p} AND {live} AND masks.seconds_spent IS NOT NULL "
                         f"GROUP BY masks.project_id, COALESCE(masks.author_id, 0), {bucket}")
    conn.exec_driver_sql(f"INSERT INTO image_mask_counts (project_id, image_id, author_key, masks) "
                         f"SELECT masks.project_id, masks.image_id, COALESCE(masks.author_id, 0), COUNT(*) FROM masks "
                         f"WHERE masks.project_id = {p} AND {live} "
                         f"GROUP BY masks.project_id, masks.image_id, COALESCE(masks.author_id, 0)")
