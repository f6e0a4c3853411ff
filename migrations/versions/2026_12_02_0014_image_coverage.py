"""images.uncovered_fraction: the share of an image no live mask covers (backend/masks/coverage.py).

Backfilled from each image's live masks with the same pycocotools union the product keeps it with,
one image at a time (an image's RLEs, not the whole table, in memory).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 00:14:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.masks.coverage import uncovered_fraction

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

images = sa.table(
    "images",
    sa.column("id", sa.Integer),
    sa.column("width", sa.Integer),
    sa.column("height", sa.Integer),
    sa.column("uncovered_fraction", sa.Double),
)
masks = sa.table(
    "masks", sa.column("image_id", sa.Integer), sa.column("rle", sa.JSON), sa.column("deleted_at", sa.DateTime)
)


def upgrade() -> None:
    # A plain ALTER on both databases: no SQLite table copy, so the rollup triggers on images stay.
    op.add_column("images", sa.Column("uncovered_fraction", sa.Double(), nullable=False, server_default="1"))
    conn = op.get_bind()
    covered = conn.execute(sa.select(masks.c.image_id).where(masks.c.deleted_at.is_(None)).distinct()).scalars().all()
    for image_id in covered:
        width, height = conn.execute(sa.select(images.c.width, images.c.height).where(images.c.id == image_id)).one()
        rles = (
            conn.execute(sa.select(masks.c.rle).where(masks.c.image_id == image_id, masks.c.deleted_at.is_(None)))
            .scalars()
            .all()
        )
        conn.execute(
            images.update()
            .where(images.c.id == image_id)
            .values(uncovered_fraction=uncovered_fraction(height, width, rles))
        )


def downgrade() -> None:
    op.drop_column("images", "uncovered_fraction")  # SQLite >= 3.35 drops a column in place
