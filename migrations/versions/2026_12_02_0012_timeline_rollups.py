"""Timeline and review rollups: masks per hour and per day, for the project and per author, and reviews per
reviewer and decision (backend/dashboard/rollups.py).

`mask_stats` (one row per hour, stage, source and author) made the timeline read and regroup every
hour of the project's life on each request, a cost that grew with the masks; it is replaced by
`timeline_hours/days` (one row per hour or day, the distinct annotators kept by a rollup of
`timeline_author_hours/days`), so a request reads only the rows it shows. `review_totals` does the same
for the review figures, which counted `mask_reviews` (a share of all auto masks) on every request. The
triggers are reinstalled
(PostgreSQL's now group the changed rows once for all rollups) and every project's rollups rebuilt.
Downgrade restores `mask_stats` and its rollup as 0004 defined it.

Also indexes the two foreign keys to `masks` that had none, `masks.parent_mask_id` and
`mask_reviews.fixed_mask_id` (partial: only set ones): deleting a mask (an image's deletion cascades
to its ~100) made PostgreSQL scan the whole masks table per deleted mask to clear its children, minutes
for one image at 1M masks.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 00:12:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.dashboard import rollups

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0004's rollup of masks per hour, stage, source and author, for the downgrade.
MASK_STATS = rollups.Rollup(
    "mask_stats",
    "masks",
    {
        "project_id": rollups.PROJECT,
        "hour": rollups._hour,
        "stage": rollups._col("stage"),
        "source": rollups._col("source"),
        "author_key": rollups.AUTHOR,
    },
    rollups.SUMS,
)
SUMS = ("masks", "manual_masks", "timed", "seconds")
# name -> (table, column): an index on each foreign key to masks that had none, over the set values only.
FK_INDEXES = {
    "ix_masks_parent_mask_id": ("masks", "parent_mask_id"),
    "ix_mask_reviews_fixed_mask_id": ("mask_reviews", "fixed_mask_id"),
}


def _timeline_table(name: str, when: str, author: bool) -> None:
    """timeline_[author_]hours/days: the key, then the sums (0 by default: two rollups write the project's)."""
    key = ["project_id", *(["author_key"] if author else []), when]
    op.create_table(
        name,
        sa.Column("project_id", sa.Integer(), nullable=False),
        *([sa.Column("author_key", sa.Integer(), nullable=False)] if author else []),
        sa.Column(when, sa.String(length=19), nullable=False),
        *[
            sa.Column(c, sa.Float() if c == "seconds" else sa.BigInteger(), server_default="0", nullable=False)
            for c in SUMS
        ],
        *([] if author else [sa.Column("annotators", sa.BigInteger(), server_default="0", nullable=False)]),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f(f"fk_{name}_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(*key, name=op.f(f"pk_{name}")),
    )


def _rebuild_all(rollup_list: list[rollups.Rollup] | None = None) -> None:
    bind = op.get_bind()
    for (project_id,) in bind.execute(sa.text("SELECT id FROM projects")).all():
        rollups.rebuild_rollups(bind, project_id, rollup_list)


def upgrade() -> None:
    bind = op.get_bind()
    rollups.uninstall(bind)
    op.drop_table("mask_stats")
    for name, when, author in [
        ("timeline_hours", "hour", False),
        ("timeline_days", "day", False),
        ("timeline_author_hours", "hour", True),
        ("timeline_author_days", "day", True),
    ]:
        _timeline_table(name, when, author)
    op.create_table(
        "review_totals",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_key", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("reviews", sa.BigInteger(), nullable=False),
        sa.Column("within", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_review_totals_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "reviewer_key", "decision", name=op.f("pk_review_totals")),
    )
    rollups.install(bind)
    _rebuild_all()
    for name, (table, column) in FK_INDEXES.items():
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, table, [column], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    bind = op.get_bind()
    for name, (table, _) in FK_INDEXES.items():
        op.drop_index(name, table_name=table)
    rollups.uninstall(bind)
    for name in ("review_totals", "timeline_author_days", "timeline_author_hours", "timeline_days", "timeline_hours"):
        op.drop_table(name)
    op.create_table(
        "mask_stats",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.String(length=19), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("author_key", sa.Integer(), nullable=False),
        *[sa.Column(c, sa.BigInteger(), nullable=False) for c in ("masks", "timed")],
        sa.Column("seconds", sa.Float(), nullable=False),
        *[
            sa.Column(c, sa.BigInteger(), nullable=False)
            for c in ("clicked", "clicks", "prefill_kept", "prefill_corrected", "prefill_deleted")
        ],
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_mask_stats_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "hour", "stage", "source", "author_key", name=op.f("pk_mask_stats")),
    )
    rollups.install(bind, [*rollups.ROLLUPS, MASK_STATS])
    _rebuild_all([*rollups.ROLLUPS, MASK_STATS])
