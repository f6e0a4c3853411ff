"""model_versions.encoder_sha256: the image encoder's identity, so versions sharing it share embeddings.

Nullable: versions registered before this revision get it from the model side the first time they
embed (`backend.model_versions.service.encoder_sha256`, which asks `ModelService.describe`); a
migration must not load model weights.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 00:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ALTER on both databases: no SQLite table copy (which would lose the partial unique index).
    op.add_column("model_versions", sa.Column("encoder_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("model_versions", "encoder_sha256")  # SQLite >= 3.35 drops a column in place
