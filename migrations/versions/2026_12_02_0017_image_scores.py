"""image_scores: the selection scores of each image and the ranks of the strategies (issue 18).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 00:17:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "image_scores",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("pooled", sa.LargeBinary(), nullable=False),
        sa.Column("uncertainty", sa.Double(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("random_rank", sa.Integer(), nullable=True),
        sa.Column("diversity_rank", sa.Integer(), nullable=True),
        sa.Column("mix_rank", sa.Integer(), nullable=True),
        sa.Column("near_duplicate_of", sa.Integer(), nullable=True),
        sa.Column("near_duplicate_similarity", sa.Double(), nullable=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_scores_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_image_scores_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_image_scores_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["near_duplicate_of"],
            ["images.id"],
            name=op.f("fk_image_scores_near_duplicate_of_images"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_image_scores")),
    )
    op.create_index(op.f("ix_image_scores_project_id"), "image_scores", ["project_id"])
    op.create_index(op.f("ix_image_scores_model_version_id"), "image_scores", ["model_version_id"])
    op.create_index(
        "ix_image_scores_near_duplicate_of",
        "image_scores",
        ["near_duplicate_of"],
        postgresql_where=sa.text("near_duplicate_of IS NOT NULL"),
        sqlite_where=sa.text("near_duplicate_of IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("image_scores")
