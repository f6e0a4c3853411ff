"""masks.client_id unique per image (image_id, client_id) instead of across every project.

A global constraint answered "already used for a mask of another image" for an id used in a project
the caller cannot see, i.e. it told them the id exists there. Saves stay idempotent per image.

Downgrade restores the global constraint; it fails (IntegrityError) if two images share a client id.
On SQLite the batch copy drops the table's triggers (the dashboard rollups of 0004); they are saved
before and recreated after, exactly as they were.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 00:07:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _swap_unique(drop: str, create: str, columns: list[str]) -> None:
    bind = op.get_bind()
    triggers = []
    if bind.dialect.name == "sqlite":
        triggers = (
            bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'masks'"))
            .scalars()
            .all()
        )
    with op.batch_alter_table("masks") as batch:  # SQLite changes constraints by copying the table
        batch.drop_constraint(op.f(drop), type_="unique")
        batch.create_unique_constraint(op.f(create), columns)
    for sql in triggers:
        op.execute(sql)


def upgrade() -> None:
    _swap_unique("uq_masks_client_id", "uq_masks_image_id_client_id", ["image_id", "client_id"])


def downgrade() -> None:
    _swap_unique("uq_masks_image_id_client_id", "uq_masks_client_id", ["client_id"])
