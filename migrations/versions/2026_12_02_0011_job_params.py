"""jobs.params (a job's inputs) and jobs.attempts (how many runs it was given) out of jobs.result.

Until 0010 `result` held three things: the inputs the route wrote when it created the job (e.g.
``model_version_id``, ``params``), the attempt counter (``attempts``, bumped by every claim), and the
work's outcome. Now each has its column. Existing rows are split: the inputs of the job's kind
(`INPUTS`) are copied to `params`, ``attempts`` moves to its column, and `result` keeps the rest; a
succeeded job's result keeps its copies of the inputs too, since its work put them there (as it still
does). Downgrade merges them back into `result`, as 0010's code wrote it.

Both columns are NOT NULL with a server default ('{}', 0), so adding them needs no table copy.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 00:11:00
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the routes of 0010 wrote into a new job's result, by job kind.
INPUTS: dict[str, tuple[str, ...]] = {
    "embed": ("model_version_id",),
    "auto": ("model_version_id", "params"),
    "export": ("format", "include_images", "polygon_tolerance"),
    "train": ("model_version_id", "params", "mask_watermark", "reason"),
    "detect_train": ("detector_version_id", "params"),
    "detect": ("detector_version_id", "params"),
}
PAGE = 5000  # rows read and rewritten at a time


def _jobs() -> sa.TableClause:
    return sa.table(
        "jobs",
        sa.column("id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("status", sa.String()),
        # A None is SQL NULL, not the JSON null.
        sa.column("result", sa.JSON(none_as_null=True)),
        sa.column("params", sa.JSON()),
        sa.column("attempts", sa.Integer()),
    )


def _split(kind: str, status: str, result: dict[str, Any] | None) -> dict[str, Any]:
    """The columns of one 0010 row under 0011."""
    rest = dict(result or {})
    attempts = int(rest.pop("attempts", 0) or 0)
    params = {key: rest[key] for key in INPUTS.get(kind, ()) if key in rest}
    if status != "succeeded":  # only the work's own result repeats its inputs
        rest = {key: value for key, value in rest.items() if key not in params}
    return {"params": params, "attempts": attempts, "result": rest or None}


def _merge(row: Any) -> dict[str, Any]:
    """The result column of one 0011 row under 0010."""
    return {"result": {**(row.params or {}), **(row.result or {}), "attempts": row.attempts}}


def _rewrite(translate: Callable[[Any], dict[str, Any]]) -> None:
    """Set the columns `translate(row)` gives for every job, page by page."""
    bind = op.get_bind()
    jobs = _jobs()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(jobs.c.id, jobs.c.kind, jobs.c.status, jobs.c.result, jobs.c.params, jobs.c.attempts)
            .where(jobs.c.id > last)
            .order_by(jobs.c.id)
            .limit(PAGE)
        ).all()
        if not rows:
            return
        values = [translate(row) for row in rows]
        bind.execute(
            jobs.update()
            .where(jobs.c.id == sa.bindparam("row_id"))
            .values({column: sa.bindparam(f"new_{column}") for column in values[0]}),
            [
                {"row_id": row.id, **{f"new_{column}": value for column, value in new.items()}}
                for row, new in zip(rows, values, strict=True)
            ],
        )
        last = rows[-1].id


def upgrade() -> None:
    op.add_column("jobs", sa.Column("params", sa.JSON(), server_default="{}", nullable=False))
    op.add_column("jobs", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    _rewrite(lambda row: _split(row.kind, row.status, row.result))


def downgrade() -> None:
    _rewrite(_merge)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("attempts")
        batch.drop_column("params")
