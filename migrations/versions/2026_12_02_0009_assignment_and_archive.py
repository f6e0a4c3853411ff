"""images.assigned_to (an image reserved for one annotator) and projects.archived_at (read-only projects).

`assigned_to` is who should annotate the image, set by a manager; it is not the claim
(`images.assignee_id` + `locked_until` stay the live lock). Removing a user frees their images
(ON DELETE SET NULL). A project with `archived_at` set takes no claims and no mask saves.

On SQLite both directions copy the images table (batch mode), which drops its triggers (the dashboard
rollups of 0004): they are saved before and recreated after, as in 0007.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 00:09:00
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@contextmanager
def _images_batch() -> Iterator[BatchOperations]:
    """Alter `images`; on SQLite (which adds a foreign key only by copying the table) its triggers,
    which the copy drops, are saved before and recreated after, exactly as they were."""
    bind = op.get_bind()
    triggers = []
    if bind.dialect.name == "sqlite":
        triggers = (
            bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'images'"))
            .scalars()
            .all()
        )
    with op.batch_alter_table("images") as batch:
        yield batch
    for sql in triggers:
        op.execute(sql)


def upgrade() -> None:
    with _images_batch() as batch:
        batch.add_column(sa.Column("assigned_to", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_images_assigned_to_users"), "users", ["assigned_to"], ["id"], ondelete="SET NULL"
        )
        batch.create_index(op.f("ix_images_assigned_to"), ["assigned_to"])
    op.add_column("projects", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("archived_at")
    with _images_batch() as batch:
        batch.drop_index(op.f("ix_images_assigned_to"))
        batch.drop_constraint(op.f("fk_images_assigned_to_users"), type_="foreignkey")
        batch.drop_column("assigned_to")
