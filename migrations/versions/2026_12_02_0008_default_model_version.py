"""model_versions.is_default: the install's default version is a choice, not "the newest official".

Before, every import of an official checkpoint silently became what new projects get. Now one global
version carries the flag (a partial unique index allows at most one); none flagged means the untrained
one. Upgrading flags the version that served as default until now (the newest ready global official
one), so an existing install keeps serving new projects exactly as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 00:08:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_index(
        "uq_model_versions_is_default",
        "model_versions",
        ["is_default"],
        unique=True,
        postgresql_where=sa.text("is_default"),
        sqlite_where=sa.text("is_default"),
    )
    op.execute(
        "UPDATE model_versions SET is_default = true WHERE id = (SELECT max(id) FROM model_versions "
        "WHERE project_id IS NULL AND origin = 'official' AND status = 'ready')"
    )


def downgrade() -> None:
    op.drop_index("uq_model_versions_is_default", table_name="model_versions")
    with op.batch_alter_table("model_versions") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("is_default")
