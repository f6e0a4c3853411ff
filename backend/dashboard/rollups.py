"""The triggers that keep the dashboard rollups (`backend/tables/dashboard.py`) exact, and their rebuild.

Each rollup is a `Rollup`: for one row `m` of its source table (`masks` or `images`) the key it counts
under, the values it adds, and whether it counts at all. From that one description come
- the row triggers (PostgreSQL: one PL/pgSQL function per source table; SQLite: one trigger per
  operation), which run inside the writing transaction: INSERT adds the new row's contribution, DELETE
  subtracts the old row's, UPDATE of a column the rollups read does both. So every write path (ORM
  flushes, Core `update(Mask)` of the review flow, raw SQL, FK cascades, `advance_stage`'s bulk image
  update) keeps them right with no code of its own, and a rollback rolls them back too. Subtracting only
  UPDATEs existing rows (never inserts), so a cascade that already removed a project's rollup rows is
  harmless; emptied rows stay behind with zeros (every reader sums, so they change nothing).
- `rebuild_rollups`: the same sums recomputed from the source tables (after a bulk load that bypassed the
  triggers, e.g. with `session_replication_role = replica`, or to repair: `dataengine rebuild-rollups`).

Migration 0004 installs the triggers with `install`; a change to the SQL here needs a new migration that
calls `uninstall` then `install` (and rebuilds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from backend.tables.dashboard import DONE_STAGES, SECONDS_BUCKETS_PER_SECOND

Expr = Callable[[str, str], str]  # (dialect, row alias) -> SQL text


@dataclass(frozen=True)
class Rollup:
    table: str
    source: str  # "masks" or "images"
    key: dict[str, Expr]  # column -> its value for row m (the primary key of `table`)
    values: dict[str, Expr]  # column -> what row m adds to it
    where: Expr | None = None  # row m counts only if this holds


def _col(name: str) -> Expr:
    return lambda d, m: f"{m}.{name}"


def _hour(dialect: str, m: str) -> str:
    """The UTC hour of `m.created_at` as 'YYYY-MM-DDTHH:00:00'."""
    if dialect == "postgresql":
        return f"""to_char(date_trunc('hour', {m}.created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:00:00')"""
    return f"strftime('%Y-%m-%dT%H:00:00', {m}.created_at)"


def _bucket(dialect: str, m: str) -> str:
    """floor(m.seconds_spent * 4) as an integer (SQLite has no floor(): truncate, then fix negatives)."""
    scaled = f"({m}.seconds_spent * {SECONDS_BUCKETS_PER_SECOND})"
    if dialect == "postgresql":
        return f"CAST(floor{scaled} AS BIGINT)"
    return f"(CAST({scaled} AS INTEGER) - ({scaled} < CAST({scaled} AS INTEGER)))"


def _stage_done(stage: str) -> Expr:
    """1 if images.stage_done has a (non-null) entry for `stage`, else 0."""

    def expr(dialect: str, m: str) -> str:
        value = (
            f"{m}.stage_done ->> '{stage}'" if dialect == "postgresql" else f"json_extract({m}.stage_done, '$.{stage}')"
        )
        return f"CASE WHEN {value} IS NOT NULL THEN 1 ELSE 0 END"

    return expr


def _when(condition: str, value: str = "1") -> Expr:
    """`value` if the live-mask `condition` ({m} substituted) holds, else 0."""
    return lambda d, m: f"CASE WHEN {condition.format(m=m)} THEN {value.format(m=m)} ELSE 0 END"


LIVE = "{m}.deleted_at IS NULL"
AUTHOR: Expr = lambda d, m: f"COALESCE({m}.author_id, 0)"  # noqa: E731
SUMS: dict[str, Expr] = {
    "masks": _when(LIVE),
    "timed": _when(LIVE + " AND {m}.seconds_spent IS NOT NULL"),
    "seconds": _when(LIVE, "COALESCE({m}.seconds_spent, 0)"),
    "clicked": _when(LIVE + " AND {m}.clicks IS NOT NULL"),
    "clicks": _when(LIVE, "COALESCE({m}.clicks, 0)"),
    **{f"prefill_{o}": _when(f"{{m}}.prefill_outcome = '{o}'") for o in ("kept", "corrected", "deleted")},
}
ONE: Expr = lambda d, m: "1"  # noqa: E731

ROLLUPS = [
    Rollup(
        "mask_totals",
        "masks",
        {"project_id": _col("project_id"), "stage": _col("stage"), "source": _col("source"), "author_key": AUTHOR},
        SUMS,
    ),
    Rollup(
        "mask_stats",
        "masks",
        {
            "project_id": _col("project_id"),
            "hour": _hour,
            "stage": _col("stage"),
            "source": _col("source"),
            "author_key": AUTHOR,
        },
        SUMS,
    ),
    Rollup(
        "mask_seconds",
        "masks",
        {"project_id": _col("project_id"), "author_key": AUTHOR, "bucket": _bucket},
        {"masks": ONE},
        lambda d, m: f"{m}.deleted_at IS NULL AND {m}.seconds_spent IS NOT NULL",
    ),
    Rollup(
        "image_mask_totals",
        "masks",
        {"project_id": _col("project_id"), "image_id": _col("image_id")},
        {"masks": ONE},
        lambda d, m: f"{m}.deleted_at IS NULL",
    ),
    Rollup(
        "image_mask_counts",
        "masks",
        {"project_id": _col("project_id"), "image_id": _col("image_id"), "author_key": AUTHOR},
        {"masks": ONE},
        lambda d, m: f"{m}.deleted_at IS NULL",
    ),
    Rollup(
        "image_stats",
        "images",
        {
            "project_id": _col("project_id"),
            "assignee_key": lambda d, m: f"COALESCE({m}.assignee_id, 0)",
            "status": _col("status"),
        },
        {"images": ONE, **{f"done_{s}": _stage_done(s) for s in DONE_STAGES}},
    ),
]


# Columns of each source table whose change moves a row between rollup rows (UPDATE OF fires only for these).
def _row_text(alias: str, columns: tuple[str, ...] | list[str]) -> str:
    """A row of `columns` to compare old and new with; json has no equality operator, so its text is compared."""
    return ", ".join(f"CAST({alias}.{c} AS text)" if c in JSON_COLUMNS else f"{alias}.{c}" for c in columns)


WATCHED = {
    "masks": [
        "project_id",
        "image_id",
        "stage",
        "source",
        "author_id",
        "seconds_spent",
        "clicks",
        "prefill_outcome",
        "deleted_at",
        "created_at",
    ],
    "images": ["project_id", "assignee_id", "status", "stage_done"],
}
JSON_COLUMNS = {"stage_done"}


def _add(dialect: str, r: Rollup, m: str) -> str:
    columns = [*r.key, *r.values]
    exprs = [f(dialect, m) for f in (*r.key.values(), *r.values.values())]
    where = r.where(dialect, m) if r.where else "true"
    updates = ", ".join(f"{c} = {r.table}.{c} + excluded.{c}" for c in r.values)
    # WHERE is needed anyway: SQLite parses INSERT ... SELECT ... ON CONFLICT only after a WHERE.
    return (
        f"INSERT INTO {r.table} ({', '.join(columns)}) SELECT {', '.join(exprs)} WHERE {where} "
        f"ON CONFLICT ({', '.join(r.key)}) DO UPDATE SET {updates}"
    )


def _subtract(dialect: str, r: Rollup, m: str) -> str:
    conditions = [f"{c} = {f(dialect, m)}" for c, f in r.key.items()]
    if r.where:
        conditions.append(r.where(dialect, m))
    return (
        f"UPDATE {r.table} SET {', '.join(f'{c} = {c} - ({f(dialect, m)})' for c, f in r.values.items())} "
        f"WHERE {' AND '.join(conditions)}"
    )


def _grouped(dialect: str, r: Rollup, relation: str, extra: str = "") -> str:
    """SELECT of `r`'s key columns and summed values over the rows of `relation` (aliased m), by key."""
    key = [f(dialect, "m") for f in r.key.values()]
    sums = [f"SUM({f(dialect, 'm')}) AS {c}" for c, f in r.values.items()]
    conditions = [c for c in (r.where(dialect, "m") if r.where else None, extra) if c]
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return (
        f"SELECT {', '.join(f'{e} AS {c}' for e, c in zip(key, r.key, strict=True))}, {', '.join(sums)} "
        f"FROM {relation} AS m{where} GROUP BY {', '.join(key)}"
    )


def _add_grouped(dialect: str, r: Rollup, relation: str, extra: str = "") -> str:
    updates = ", ".join(f"{c} = {r.table}.{c} + excluded.{c}" for c in r.values)
    return (
        f"INSERT INTO {r.table} ({', '.join([*r.key, *r.values])}) {_grouped(dialect, r, relation, extra)} "
        f"ON CONFLICT ({', '.join(r.key)}) DO UPDATE SET {updates}"
    )


def _subtract_grouped(dialect: str, r: Rollup, relation: str, extra: str = "") -> str:
    return (
        f"UPDATE {r.table} SET {', '.join(f'{c} = {r.table}.{c} - d.{c}' for c in r.values)} "
        f"FROM ({_grouped(dialect, r, relation, extra)}) AS d "
        f"WHERE {' AND '.join(f'{r.table}.{c} = d.{c}' for c in r.key)}"
    )


def install_statements(dialect: str) -> list[str]:
    """DDL creating the rollup triggers on `dialect` ("postgresql" or "sqlite").

    PostgreSQL: statement-level triggers over the transition tables, so a statement writing many rows
    (a bulk insert, the ORM's batched INSERT, advance_stage's UPDATE of every image) costs one grouped
    upsert per rollup, not one per row. An UPDATE counts only the rows whose watched columns changed.
    SQLite (no statement triggers): row triggers.
    """
    out = []
    for source, watched in WATCHED.items():
        rollups = [r for r in ROLLUPS if r.source == source]
        name = f"{source}_rollups"
        if dialect == "postgresql":
            changed = (
                f"m.id IN (SELECT o.id FROM old_rows AS o JOIN new_rows AS n ON o.id = n.id "
                f"WHERE ({_row_text('o', watched)}) IS DISTINCT FROM ({_row_text('n', watched)}))"
            )
            bodies = {
                "insert": [_add_grouped(dialect, r, "new_rows") for r in rollups],
                "delete": [_subtract_grouped(dialect, r, "old_rows") for r in rollups],
                "update": [_subtract_grouped(dialect, r, "old_rows", changed) for r in rollups]
                + [_add_grouped(dialect, r, "new_rows", changed) for r in rollups],
            }
            tables = {
                "insert": "NEW TABLE AS new_rows",
                "delete": "OLD TABLE AS old_rows",
                "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            }
            for op, statements in bodies.items():
                out += [
                    f"CREATE FUNCTION {name}_{op}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
                    + "".join(f"  {s};\n" for s in statements)
                    + "  RETURN NULL;\nEND\n$$",
                    f"CREATE TRIGGER {name}_{op} AFTER {op.upper()} ON {source} REFERENCING {tables[op]} "
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {name}_{op}()",
                ]
        elif dialect == "sqlite":
            subtract = [_subtract(dialect, r, "OLD") for r in rollups]
            add = [_add(dialect, r, "NEW") for r in rollups]

            def body(statements: list[str]) -> str:
                return "".join(f"  {s};\n" for s in statements)

            out += [
                f"CREATE TRIGGER {name}_insert AFTER INSERT ON {source} BEGIN\n{body(add)}END",
                f"CREATE TRIGGER {name}_delete AFTER DELETE ON {source} BEGIN\n{body(subtract)}END",
                f"CREATE TRIGGER {name}_update AFTER UPDATE OF {', '.join(watched)} ON {source} BEGIN\n"
                f"{body(subtract + add)}END",
            ]
        else:
            raise ValueError(f"no rollup triggers for database dialect {dialect!r}")
    return out


def uninstall_statements(dialect: str) -> list[str]:
    ops = ("insert", "delete", "update")
    if dialect == "postgresql":
        return [
            s
            for source in WATCHED
            for op in ops
            for s in (
                f"DROP TRIGGER IF EXISTS {source}_rollups_{op} ON {source}",
                f"DROP FUNCTION IF EXISTS {source}_rollups_{op}()",
            )
        ]
    return [f"DROP TRIGGER IF EXISTS {source}_rollups_{op}" for source in WATCHED for op in ops]


def install(conn: Connection) -> None:
    for statement in install_statements(conn.dialect.name):
        conn.exec_driver_sql(statement)


def uninstall(conn: Connection) -> None:
    for statement in uninstall_statements(conn.dialect.name):
        conn.exec_driver_sql(statement)


def rebuild_rollups(db: Session | Connection, project_id: int) -> None:
    """Recompute the project's rollup rows from `masks` and `images` (in the caller's transaction)."""
    conn = db.connection() if isinstance(db, Session) else db
    dialect = conn.dialect.name
    p = int(project_id)  # inlined: the SQL holds literal colons (hour formats) that bind syntax would take
    for r in ROLLUPS:
        conn.exec_driver_sql(f"DELETE FROM {r.table} WHERE project_id = {p}")
        conn.exec_driver_sql(
            f"INSERT INTO {r.table} ({', '.join([*r.key, *r.values])}) "
            f"{_grouped(dialect, r, r.source, f'm.project_id = {p}')}"
        )
