"""Dashboard rollups kept by triggers on masks and images (backend/dashboard/rollups.py).

Also swaps the partial mask indexes of 0003 that only the old full-scan dashboard needed (stage/source,
per image, timeline, prefill) for the two the rollup dashboard probes: per author by seconds (exact
per-annotator percentiles) and per author by creation time (first/last mask).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 23:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.dashboard import rollups

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")
PREFILLED = sa.text("prefill_outcome IS NOT NULL")
# 0003's indexes that the rollups replace: name -> (columns, predicate), to restore on downgrade.
DROPPED: dict[str, tuple[list[str], sa.TextClause]] = {
    "ix_masks_live_stage_source": (["project_id", "stage", "source", "seconds_spent", "clicks"], LIVE),
    "ix_masks_live_image": (["project_id", "image_id"], LIVE),
    "ix_masks_live_author_seconds": (["project_id", "author_id", "seconds_spent", "clicks", "created_at"], LIVE),
    "ix_masks_live_created": (["project_id", "created_at", "source", "seconds_spent", "author_id"], LIVE),
    "ix_masks_prefill": (["project_id", "prefill_outcome"], PREFILLED),
}
CREATED: dict[str, list[str]] = {
    "ix_masks_live_author_seconds": ["project_id", "author_id", "seconds_spent"],
    "ix_masks_live_author_created": ["project_id", "author_id", "created_at"],
}


def _sums_table(name: str, key: list[sa.Column]) -> None:
    """mask_totals / mask_stats: `key` columns after project_id, then the summed figures."""
    op.create_table(
        name,
        sa.Column("project_id", sa.Integer(), nullable=False),
        *key,
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
            ["project_id"], ["projects.id"], name=op.f(f"fk_{name}_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "project_id", *[c.name for c in key], "stage", "source", "author_key", name=op.f(f"pk_{name}")
        ),
    )


def upgrade() -> None:
    _sums_table("mask_totals", [])
    _sums_table("mask_stats", [sa.Column("hour", sa.String(length=19), nullable=False)])
    op.create_table(
        "mask_seconds",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("author_key", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("masks", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_mask_seconds_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "author_key", "bucket", name=op.f("pk_mask_seconds")),
    )
    op.create_table(
        "image_mask_counts",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("author_key", sa.Integer(), nullable=False),
        sa.Column("masks", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_image_mask_counts_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_mask_counts_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "image_id", "author_key", name=op.f("pk_image_mask_counts")),
    )
    op.create_index("ix_image_mask_counts_image_id", "image_mask_counts", ["image_id"])
    op.create_table(
        "image_mask_totals",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("masks", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_image_mask_totals_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_mask_totals_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "image_id", name=op.f("pk_image_mask_totals")),
    )
    op.create_table(
        "image_stats",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("assignee_key", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        *[
            sa.Column(c, sa.BigInteger(), nullable=False)
            for c in ("images", "done_assisted_manual", "done_semi_automatic", "done_fully_automatic", "done_done")
        ],
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_image_stats_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "assignee_key", "status", name=op.f("pk_image_stats")),
    )
    for name in DROPPED:
        op.drop_index(name, table_name="masks")
    for name, columns in CREATED.items():
        op.create_index(name, "masks", columns, postgresql_where=LIVE, sqlite_where=LIVE)
    bind = op.get_bind()
    rollups.install(bind)
    for (project_id,) in bind.execute(sa.text("SELECT id FROM projects")).all():
        rollups.rebuild_rollups(bind, project_id)


def downgrade() -> None:
    rollups.uninstall(op.get_bind())
    for name in CREATED:
        op.drop_index(name, table_name="masks")
    for name, (columns, where) in DROPPED.items():
        op.create_index(name, "masks", columns, postgresql_where=where, sqlite_where=where)
    op.drop_index("ix_image_mask_counts_image_id", table_name="image_mask_counts")
    op.drop_table("image_mask_counts")
    op.drop_table("mask_seconds")
    op.drop_table("image_stats")
    op.drop_table("image_mask_totals")
    op.drop_table("mask_stats")
    op.drop_table("mask_totals")
