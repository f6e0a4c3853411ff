"""Rollups for the last dashboard figures that grew with the masks: the masks-per-image histograms and the
exact seconds-per-mask percentiles (backend/dashboard/rollups.py).

The histogram read one `image_mask_totals` row per image (per author: one `image_mask_counts` row per
image the author masked) on every summary and /me request; `image_mask_histogram` and
`author_mask_histogram` count the images per masks-per-image value, kept by a rollup of those two
rollups, so it reads one row per distinct count. The percentiles located their quarter-second bucket in
`mask_seconds` and then walked the masks' seconds index inside it (OFFSET up to the bucket's masks:
thousands of rows at 10M masks); `mask_seconds_values` counts the live masks per author and exact
value, so the walk is over distinct values. The triggers are reinstalled (the masks trigger writes the
new table; the two per-image rollups get triggers of their own) and only the new tables are rebuilt
from their sources (the other rollups are unchanged; rebuilding them all took ~15 minutes at 10M masks).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 00:16:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.dashboard import rollups

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = ("mask_seconds_values", "image_mask_histogram", "author_mask_histogram")


def _project_fk(name: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id"], ["projects.id"], name=op.f(f"fk_{name}_project_id_projects"), ondelete="CASCADE"
    )


def upgrade() -> None:
    bind = op.get_bind()
    rollups.uninstall(bind)
    op.create_table(
        "mask_seconds_values",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("author_key", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("masks", sa.BigInteger(), nullable=False),
        _project_fk("mask_seconds_values"),
        sa.PrimaryKeyConstraint("project_id", "author_key", "seconds", name=op.f("pk_mask_seconds_values")),
    )
    op.create_index("ix_mask_seconds_values_project_seconds", "mask_seconds_values", ["project_id", "seconds"])
    op.create_table(
        "image_mask_histogram",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("masks", sa.BigInteger(), nullable=False),
        sa.Column("images", sa.BigInteger(), nullable=False),
        _project_fk("image_mask_histogram"),
        sa.PrimaryKeyConstraint("project_id", "masks", name=op.f("pk_image_mask_histogram")),
    )
    op.create_table(
        "author_mask_histogram",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("author_key", sa.Integer(), nullable=False),
        sa.Column("masks", sa.BigInteger(), nullable=False),
        sa.Column("images", sa.BigInteger(), nullable=False),
        _project_fk("author_mask_histogram"),
        sa.PrimaryKeyConstraint("project_id", "author_key", "masks", name=op.f("pk_author_mask_histogram")),
    )
    rollups.install(bind)
    new = [r for r in rollups.ROLLUPS if r.table in NEW]
    for (project_id,) in bind.execute(sa.text("SELECT id FROM projects")).all():
        rollups.rebuild_rollups(bind, project_id, new)


def downgrade() -> None:
    bind = op.get_bind()
    rollups.uninstall(bind)
    for name in reversed(NEW):
        op.drop_table(name)
    rollups.install(bind)  # the rollups whose tables remain: 0015's set
