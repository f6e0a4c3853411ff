"""The triggers that keep the dashboard rollups (`backend/tables/dashboard.py`) exact, and their rebuild.

Each rollup is a `Rollup`: for one row `m` of its source table the key it counts under, the values it
adds, and whether it counts at all. Sources are `masks`, `images`, `mask_reviews`, and four rollups themselves
(`timeline_author_hours/days`: distinct annotators per hour or day are the author rows with masks, counted
into `timeline_hours/days.annotators` by a rollup of that rollup; `image_mask_totals/counts`: images per
masks-per-image count, the histograms). From that one description come
- the triggers, which run inside the writing transaction: INSERT adds the new rows' contribution, DELETE
  subtracts the old rows', UPDATE of a column the rollups read does both. So every write path (ORM
  flushes, the mask writer's multi-row INSERT, Core `update(Mask)` of the review flow, raw SQL, FK
  cascades, `advance_stage`'s bulk image update) keeps them right with no code of its own, and a rollback
  rolls them back too. Subtracting only UPDATEs existing rows (never inserts), so a cascade that already
  removed a project's rollup rows is harmless; emptied rows stay behind with zeros (every reader sums or
  skips them, so they change nothing).
- `rebuild_rollups`: the same sums recomputed from the source tables (after a bulk load that bypassed the
  triggers, e.g. with `session_replication_role = replica`, or to repair: `dataengine rebuild-rollups`).

Migration 0004 installed the first set with `install`, 0012 (timeline rollups) the next, 0016 (histograms and
seconds per value) the current one; a change
to the SQL here needs a new migration that calls `uninstall` then `install` (and rebuilds). `install` and
`rebuild_rollups` take the rollups whose tables exist, so an older migration that calls them still works.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, inspect
from sqlalchemy.orm import Session

from backend.tables.dashboard import DONE_STAGES, REVIEW_IOU_THRESHOLD, SECONDS_BUCKETS_PER_SECOND

Expr = Callable[[str, str], str]  # (dialect, row alias) -> SQL text


@dataclass(frozen=True)
class Rollup:
    table: str
    source: str  # a key of SOURCES
    key: dict[str, Expr]  # column -> its value for row m (the primary key of `table`)
    values: dict[str, Expr]  # column -> what row m adds to it
    where: Expr | None = None  # row m counts only if this holds


@dataclass(frozen=True)
class Source:
    identity: tuple[str, ...]  # the columns naming one row (to pair an UPDATE's old and new rows)
    watched: tuple[str, ...]  # the columns the rollups read: an UPDATE of only other columns moves nothing


def _col(name: str) -> Expr:
    return lambda d, m: f"{m}.{name}"


def _hour(dialect: str, m: str) -> str:
    """The UTC hour of `m.created_at` as 'YYYY-MM-DDTHH:00:00'."""
    if dialect == "postgresql":
        return f"""to_char(date_trunc('hour', {m}.created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:00:00')"""
    return f"strftime('%Y-%m-%dT%H:00:00', {m}.created_at)"


def _day(dialect: str, m: str) -> str:
    """The UTC day of `m.created_at` as 'YYYY-MM-DDT00:00:00'."""
    if dialect == "postgresql":
        return f"""to_char({m}.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T00:00:00"')"""
    return f"strftime('%Y-%m-%dT00:00:00', {m}.created_at)"


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
TIMELINE: dict[str, Expr] = {
    "masks": SUMS["masks"],
    "manual_masks": _when(LIVE + " AND {m}.source = 'manual'"),
    "timed": SUMS["timed"],
    "seconds": SUMS["seconds"],
}
ONE: Expr = lambda d, m: "1"  # noqa: E731
PROJECT = _col("project_id")
LIVE_MASK: Expr = lambda d, m: f"{m}.deleted_at IS NULL"  # noqa: E731
WITH_MASKS: Expr = lambda d, m: f"{m}.masks > 0 AND {m}.author_key > 0"  # noqa: E731 - an annotator's bucket
ANY_MASK: Expr = lambda d, m: f"{m}.masks > 0"  # noqa: E731 - an image (of an author) with masks
TIMED_LIVE: Expr = lambda d, m: f"{m}.deleted_at IS NULL AND {m}.seconds_spent IS NOT NULL"  # noqa: E731

SOURCES = {
    "masks": Source(
        ("id",),
        (
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
        ),
    ),
    "images": Source(("id",), ("project_id", "assignee_id", "status", "stage_done")),
    "mask_reviews": Source(("id",), ("project_id", "reviewer_id", "decision", "iou")),
    "timeline_author_hours": Source(("project_id", "author_key", "hour"), ("masks",)),
    "timeline_author_days": Source(("project_id", "author_key", "day"), ("masks",)),
    "image_mask_totals": Source(("project_id", "image_id"), ("masks",)),
    "image_mask_counts": Source(("project_id", "image_id", "author_key"), ("masks",)),
}
JSON_COLUMNS = {"stage_done"}
# Sources that are rollups themselves.
ROLLUP_SOURCES = {"timeline_author_hours", "timeline_author_days", "image_mask_totals", "image_mask_counts"}

# In dependency order: a rollup reading another rollup's table comes after the rollups writing it.
ROLLUPS = [
    Rollup(
        "mask_totals",
        "masks",
        {"project_id": PROJECT, "stage": _col("stage"), "source": _col("source"), "author_key": AUTHOR},
        SUMS,
    ),
    Rollup(
        "mask_seconds",
        "masks",
        {"project_id": PROJECT, "author_key": AUTHOR, "bucket": _bucket},
        {"masks": ONE},
        TIMED_LIVE,
    ),
    Rollup(
        "mask_seconds_values",
        "masks",
        {"project_id": PROJECT, "author_key": AUTHOR, "seconds": _col("seconds_spent")},
        {"masks": ONE},
        TIMED_LIVE,
    ),
    Rollup(
        "image_mask_totals", "masks", {"project_id": PROJECT, "image_id": _col("image_id")}, {"masks": ONE}, LIVE_MASK
    ),
    Rollup(
        "image_mask_counts",
        "masks",
        {"project_id": PROJECT, "image_id": _col("image_id"), "author_key": AUTHOR},
        {"masks": ONE},
        LIVE_MASK,
    ),
    Rollup("timeline_author_hours", "masks", {"project_id": PROJECT, "author_key": AUTHOR, "hour": _hour}, TIMELINE),
    Rollup("timeline_author_days", "masks", {"project_id": PROJECT, "author_key": AUTHOR, "day": _day}, TIMELINE),
    Rollup("timeline_hours", "masks", {"project_id": PROJECT, "hour": _hour}, TIMELINE),
    Rollup("timeline_days", "masks", {"project_id": PROJECT, "day": _day}, TIMELINE),
    Rollup(
        "timeline_hours",
        "timeline_author_hours",
        {"project_id": PROJECT, "hour": _col("hour")},
        {"annotators": ONE},
        WITH_MASKS,
    ),
    Rollup(
        "timeline_days",
        "timeline_author_days",
        {"project_id": PROJECT, "day": _col("day")},
        {"annotators": ONE},
        WITH_MASKS,
    ),
    Rollup(
        "image_mask_histogram",
        "image_mask_totals",
        {"project_id": PROJECT, "masks": _col("masks")},
        {"images": ONE},
        ANY_MASK,
    ),
    Rollup(
        "author_mask_histogram",
        "image_mask_counts",
        {"project_id": PROJECT, "author_key": _col("author_key"), "masks": _col("masks")},
        {"images": ONE},
        ANY_MASK,
    ),
    Rollup(
        "image_stats",
        "images",
        {
            "project_id": PROJECT,
            "assignee_key": lambda d, m: f"COALESCE({m}.assignee_id, 0)",
            "status": _col("status"),
        },
        {"images": ONE, **{f"done_{s}": _stage_done(s) for s in DONE_STAGES}},
    ),
    Rollup(
        "review_totals",
        "mask_reviews",
        {
            "project_id": PROJECT,
            "reviewer_key": lambda d, m: f"COALESCE({m}.reviewer_id, 0)",
            "decision": _col("decision"),
        },
        {"reviews": ONE, "within": _when(f"{{m}}.iou > {REVIEW_IOU_THRESHOLD!r}")},
    ),
]


def _row_text(alias: str, columns: Iterable[str]) -> str:
    """A row of `columns` to compare old and new with; json has no equality operator, so its text is compared."""
    return ", ".join(f"CAST({alias}.{c} AS text)" if c in JSON_COLUMNS else f"{alias}.{c}" for c in columns)


# SQLite: row triggers, one statement per rollup and row.


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


# PostgreSQL: statement triggers. The changed rows are grouped once, by every key and condition of every
# rollup of the source ("fine"), and each rollup sums the fine groups: one pass over the transition table
# whatever the number of rollups, and a bulk insert of auto masks (one author, hour, stage and source per
# image) shrinks to about one fine row per image before any rollup is touched.


@dataclass(frozen=True)
class _Fine:
    select: str  # the grouped SELECT over the transition table, aliased m
    names: dict[str, str]  # SQL expression -> its column in the fine rows


def _fine(rollups: list[Rollup], relation: str, extra: str | None) -> _Fine:
    names: dict[str, str] = {}
    groups, sums = [], []
    for r in rollups:
        for f in [*r.key.values(), *([r.where] if r.where else [])]:
            e = f("postgresql", "m")
            if e not in names:
                names[e] = f"g{len(names)}"
                groups.append(e)
        for f in r.values.values():
            e = f("postgresql", "m")
            if e not in names:
                names[e] = f"g{len(names)}"
                sums.append(e)
    columns = [f"{e} AS {names[e]}" for e in groups] + [f"SUM({e}) AS {names[e]}" for e in sums]
    where = f" WHERE {extra}" if extra else ""
    return _Fine(
        f"SELECT {', '.join(columns)} FROM {relation} AS m{where} GROUP BY {', '.join(names[e] for e in groups)}",
        names,
    )


def _from_fine(fine: _Fine, r: Rollup) -> str:
    """`r`'s key and summed values over the fine rows."""

    def name(f: Expr) -> str:
        return "f." + fine.names[f("postgresql", "m")]

    keys = [f"{name(f)} AS {c}" for c, f in r.key.items()]
    sums = [f"SUM({name(f)}) AS {c}" for c, f in r.values.items()]
    where = f" WHERE {name(r.where)}" if r.where else ""
    return (
        f"SELECT {', '.join(keys + sums)} FROM fine AS f{where} GROUP BY {', '.join(name(f) for f in r.key.values())}"
    )


def _upsert(r: Rollup, rows: str) -> str:
    updates = ", ".join(f"{c} = {r.table}.{c} + excluded.{c}" for c in r.values)
    return (
        f"INSERT INTO {r.table} ({', '.join([*r.key, *r.values])}) {rows} "
        f"ON CONFLICT ({', '.join(r.key)}) DO UPDATE SET {updates}"
    )


def _take(r: Rollup, rows: str) -> str:
    return (
        f"UPDATE {r.table} SET {', '.join(f'{c} = {r.table}.{c} - d.{c}' for c in r.values)} "
        f"FROM ({rows}) AS d WHERE {' AND '.join(f'{r.table}.{c} = d.{c}' for c in r.key)}"
    )


def _one_statement(rollups: list[Rollup], relation: str, extra: str | None, write: Callable[[Rollup, str], str]) -> str:
    """WITH fine AS (...), r0 AS (write rollup 0), ... <write the last rollup>: one statement for them all."""
    fine = _fine(rollups, relation, extra)
    writes = [write(r, _from_fine(fine, r)) for r in rollups]
    ctes = [f"fine AS MATERIALIZED ({fine.select})"] + [f"r{i} AS ({w})" for i, w in enumerate(writes[:-1])]
    return f"WITH {', '.join(ctes)} {writes[-1]}"


def _postgres_statements(source: str, rollups: list[Rollup]) -> list[str]:
    s = SOURCES[source]
    ids = ", ".join(f"m.{c}" for c in s.identity)
    pairs = " AND ".join(f"o.{c} = n.{c}" for c in s.identity)
    changed = (
        f"({ids}) IN (SELECT {', '.join(f'o.{c}' for c in s.identity)} FROM old_rows AS o JOIN new_rows AS n "
        f"ON {pairs} WHERE ({_row_text('o', s.watched)}) IS DISTINCT FROM ({_row_text('n', s.watched)}))"
    )
    bodies = {
        "insert": [_one_statement(rollups, "new_rows", None, _upsert)],
        "delete": [_one_statement(rollups, "old_rows", None, _take)],
        "update": [
            _one_statement(rollups, "old_rows", changed, _take),
            _one_statement(rollups, "new_rows", changed, _upsert),
        ],
    }
    tables = {
        "insert": "NEW TABLE AS new_rows",
        "delete": "OLD TABLE AS old_rows",
        "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    }
    name = f"{source}_rollups"
    out = []
    for op, statements in bodies.items():
        out += [
            f"CREATE FUNCTION {name}_{op}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
            + "".join(f"  {st};\n" for st in statements)
            + "  RETURN NULL;\nEND\n$$",
            f"CREATE TRIGGER {name}_{op} AFTER {op.upper()} ON {source} REFERENCING {tables[op]} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}_{op}()",
        ]
    return out


def _sqlite_statements(source: str, rollups: list[Rollup]) -> list[str]:
    subtract = [_subtract("sqlite", r, "OLD") for r in rollups]
    add = [_add("sqlite", r, "NEW") for r in rollups]

    def body(statements: list[str]) -> str:
        return "".join(f"  {st};\n" for st in statements)

    name = f"{source}_rollups"
    return [
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON {source} BEGIN\n{body(add)}END",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON {source} BEGIN\n{body(subtract)}END",
        f"CREATE TRIGGER {name}_update AFTER UPDATE OF {', '.join(SOURCES[source].watched)} ON {source} BEGIN\n"
        f"{body(subtract + add)}END",
    ]


def install_statements(dialect: str, rollups: list[Rollup] = ROLLUPS) -> list[str]:
    """DDL creating the triggers of `rollups` on `dialect` ("postgresql" or "sqlite").

    PostgreSQL: statement-level triggers over the transition tables, so a statement writing many rows
    (a bulk insert, the ORM's batched INSERT, advance_stage's UPDATE of every image) costs one grouping
    of the rows and one grouped upsert per rollup, all in one statement, not work per row. An UPDATE
    counts only the rows whose watched columns changed. SQLite (no statement triggers): row triggers.
    """
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"no rollup triggers for database dialect {dialect!r}")
    out = []
    for source in SOURCES:
        mine = [r for r in rollups if r.source == source]
        if mine:
            out += (_postgres_statements if dialect == "postgresql" else _sqlite_statements)(source, mine)
    return out


def uninstall_statements(dialect: str, sources: Iterable[str] = SOURCES) -> list[str]:
    ops = ("insert", "delete", "update")
    if dialect == "postgresql":
        return [
            st
            for source in sources
            for op in ops
            for st in (
                f"DROP TRIGGER IF EXISTS {source}_rollups_{op} ON {source}",
                f"DROP FUNCTION IF EXISTS {source}_rollups_{op}()",
            )
        ]
    return [f"DROP TRIGGER IF EXISTS {source}_rollups_{op}" for source in sources for op in ops]


def present(conn: Connection, rollups: list[Rollup] = ROLLUPS) -> list[Rollup]:
    """The rollups whose table and source exist (all of them once migration 0016 ran)."""
    tables = set(inspect(conn).get_table_names())
    return [r for r in rollups if r.table in tables and r.source in tables]


def install(conn: Connection, rollups: list[Rollup] | None = None) -> None:
    for statement in install_statements(conn.dialect.name, present(conn, rollups or ROLLUPS)):
        conn.exec_driver_sql(statement)


def uninstall(conn: Connection) -> None:
    tables = set(inspect(conn).get_table_names())
    for statement in uninstall_statements(conn.dialect.name, [s for s in SOURCES if s in tables]):
        conn.exec_driver_sql(statement)


def _grouped(dialect: str, r: Rollup, relation: str, extra: str) -> str:
    """SELECT of `r`'s key columns and summed values over the rows of `relation` (aliased m), by key."""
    key = [f(dialect, "m") for f in r.key.values()]
    sums = [f"SUM({f(dialect, 'm')}) AS {c}" for c, f in r.values.items()]
    conditions = [c for c in (r.where(dialect, "m") if r.where else None, extra) if c]
    return (
        f"SELECT {', '.join(f'{e} AS {c}' for e, c in zip(key, r.key, strict=True))}, {', '.join(sums)} "
        f"FROM {relation} AS m WHERE {' AND '.join(conditions)} GROUP BY {', '.join(key)}"
    )


def rebuild_rollups(db: Session | Connection, project_id: int, rollups: list[Rollup] | None = None) -> None:
    """Recompute the project's rollup rows from their sources (in the caller's transaction).

    Whether or not the triggers fire meanwhile (a rebuild's INSERT into an author timeline fires the
    rollup of the annotators), the result is the same: every table is emptied first, and a rollup of a
    rollup zeroes its columns before summing its source, which is complete by then (dependency order).
    On PostgreSQL the rollups of one table are rebuilt by one statement, the triggers' form (one
    grouping of the project's rows, every rollup summed from those groups): one pass over `masks`
    instead of one per rollup, with a larger `work_mem` for the rest of the transaction (the grouping
    of a 10M-mask project holds millions of groups).
    """
    conn = db.connection() if isinstance(db, Session) else db
    dialect = conn.dialect.name
    chosen = present(conn, rollups or ROLLUPS)
    p = int(project_id)  # inlined: the SQL holds literal colons (hour formats) that bind syntax would take
    for table in dict.fromkeys(r.table for r in chosen):
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE project_id = {p}")
    if dialect == "postgresql":
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        for source in SOURCES:
            mine = [r for r in chosen if r.source == source]
            if mine and source not in ROLLUP_SOURCES:
                conn.exec_driver_sql(_one_statement(mine, source, f"m.project_id = {p}", _upsert))
    for r in chosen:
        if r.source in ROLLUP_SOURCES:
            conn.exec_driver_sql(
                f"UPDATE {r.table} SET {', '.join(f'{c} = 0' for c in r.values)} WHERE project_id = {p}"
            )
        elif dialect == "postgresql":
            continue  # rebuilt above
        rows = _grouped(dialect, r, r.source, f"m.project_id = {p}")
        updates = ", ".join(f"{c} = {r.table}.{c} + excluded.{c}" for c in r.values)
        conn.exec_driver_sql(
            f"INSERT INTO {r.table} ({', '.join([*r.key, *r.values])}) {rows} "
            f"ON CONFLICT ({', '.join(r.key)}) DO UPDATE SET {updates}"
        )
