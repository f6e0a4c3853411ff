"""masks.provenance (how each mask came to be) replaces masks.prompts; mask source `imported`.

`prompts` held two things: a manual mask's clicks/box/strokes, and for every other mask whatever its
writer wanted to keep (the detector's box and version, the auto run's model version and job, the
reviewed mask of a fix, the imported file's annotation). `provenance` holds all of it under one
shape, ``{"origin": ..., ...}``, and is never NULL; a manual mask's prompts are its
``provenance["prompts"]``. Existing rows are translated (`_provenance`), and back on downgrade
(`_prompts`). The mask source gains `imported` (masks read from another tool's files).

On SQLite the CHECK constraint of the source and the dropped column need a copy of the table (batch
mode), which drops its triggers (the dashboard rollups of 0004): they are saved before and recreated
after, as in 0007 and 0009. Rewriting prompts/provenance fires no rollup trigger (no figure depends
on them); on downgrade imported masks become manual, and the update trigger moves their counts.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 00:10:00
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES_BEFORE = ("manual", "detector", "auto")
SOURCES_AFTER = (*SOURCES_BEFORE, "imported")
SOURCE_CHECK = "ck_masks_mask_source"

# Rows are read and rewritten in pages, so a large table never sits in memory at once.
PAGE = 5000


def _masks() -> sa.Table:
    return sa.table(
        "masks",
        sa.column("id", sa.Integer()),
        sa.column("source", sa.String()),
        # A None is SQL NULL, not the JSON null.
        sa.column("prompts", sa.JSON(none_as_null=True)),
        sa.column("provenance", sa.JSON(none_as_null=True)),
    )


def _provenance(source: str, prompts: dict[str, Any] | None) -> dict[str, Any]:
    """What a row of 0009 kept in `prompts`, as the provenance of backend/masks/ writes it."""
    known = prompts or {}
    if "import" in known:
        return {"origin": "imported", **known["import"]}
    if "review_of" in known:
        return {"origin": "review_fix", "review_of": known["review_of"]}
    if source in ("detector", "auto"):
        return {"origin": source, **known}
    return {"origin": "annotated"} if prompts is None else {"origin": "annotated", "prompts": prompts}


def _prompts(provenance: dict[str, Any]) -> dict[str, Any] | None:
    """The inverse of `_provenance`: what 0009's writers kept in `prompts`."""
    rest = {k: v for k, v in provenance.items() if k != "origin"}
    origin = provenance.get("origin")
    if origin == "imported":
        return {"import": rest}
    if origin == "annotated":
        return rest.get("prompts")
    return rest or None


def _rewrite(read: str, write: str, translate: Any) -> None:
    """Set column `write` of every mask to `translate(source, value of column read)`, page by page."""
    bind = op.get_bind()
    masks = _masks()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(masks.c.id, masks.c.source, masks.c[read])
            .where(masks.c.id > last)
            .order_by(masks.c.id)
            .limit(PAGE)
        ).all()
        if not rows:
            return
        bind.execute(
            masks.update().where(masks.c.id == sa.bindparam("row_id")).values({write: sa.bindparam("value")}),
            [{"row_id": row.id, "value": translate(row.source, row[2])} for row in rows],
        )
        last = rows[-1].id


@contextmanager
def _masks_batch() -> Iterator[BatchOperations]:
    """Alter `masks`; on SQLite, whose batch copy drops the table's triggers, they are saved before
    and recreated after, exactly as they were."""
    bind = op.get_bind()
    triggers = []
    if bind.dialect.name == "sqlite":
        triggers = (
            bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'masks'"))
            .scalars()
            .all()
        )
    with op.batch_alter_table("masks") as batch:
        yield batch
    for sql in triggers:
        op.execute(sql)


def _source_check(batch: BatchOperations, values: tuple[str, ...]) -> None:
    batch.drop_constraint(op.f(SOURCE_CHECK), type_="check")
    batch.create_check_constraint(op.f(SOURCE_CHECK), sa.column("source").in_(values))


def upgrade() -> None:
    op.add_column("masks", sa.Column("provenance", sa.JSON(), nullable=True))
    _rewrite("prompts", "provenance", _provenance)
    with _masks_batch() as batch:
        batch.alter_column("provenance", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("prompts")
        _source_check(batch, SOURCES_AFTER)


def downgrade() -> None:
    op.add_column("masks", sa.Column("prompts", sa.JSON(), nullable=True))
    _rewrite("provenance", "prompts", lambda _source, provenance: _prompts(provenance))
    bind = op.get_bind()
    masks = _masks()
    bind.execute(masks.update().where(masks.c.source == "imported").values(source="manual"))
    with _masks_batch() as batch:
        batch.drop_column("provenance")
        _source_check(batch, SOURCES_BEFORE)
