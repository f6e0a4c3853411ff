"""Dashboard indexes: partial indexes over live masks for the dashboard's aggregates.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")
PREFILLED = sa.text("prefill_outcome IS NOT NULL")

# name -> (columns, partial-index predicate); the same as in backend/tables/masks.py.
INDEXES: dict[str, tuple[list[str], sa.TextClause]] = {
    "ix_masks_live_stage_source": (["project_id", "stage", "source", "seconds_spent", "clicks"], LIVE),
    "ix_masks_live_image": (["project_id", "image_id"], LIVE),
    "ix_masks_live_seconds": (["project_id", "seconds_spent"], LIVE),
    "ix_masks_live_author_seconds": (["project_id", "author_id", "seconds_spent", "clicks", "created_at"], LIVE),
    "ix_masks_live_created": (["project_id", "created_at", "source", "seconds_spent", "author_id"], LIVE),
    "ix_masks_prefill": (["project_id", "prefill_outcome"], PREFILLED),
}


def upgrade() -> None:
    for name, (columns, where) in INDEXES.items():
        op.create_index(name, "masks", columns, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="masks")
