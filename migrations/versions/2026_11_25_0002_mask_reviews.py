"""mask_reviews: the outcome of reviewing a sampled auto mask (decision, IoU after correction).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 22:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mask_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mask_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column(
            "decision",
            sa.Enum(
                "accept", "reject", "fix", name="review_decision", native_enum=False, create_constraint=True, length=32
            ),
            nullable=False,
        ),
        sa.Column("iou", sa.Double(), nullable=True),
        sa.Column("fixed_mask_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mask_id"], ["masks.id"], name=op.f("fk_mask_reviews_mask_id_masks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["fixed_mask_id"], ["masks.id"], name=op.f("fk_mask_reviews_fixed_mask_id_masks"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_mask_reviews_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_mask_reviews_reviewer_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mask_reviews")),
        sa.UniqueConstraint("mask_id", name=op.f("uq_mask_reviews_mask_id")),
    )
    op.create_index(op.f("ix_mask_reviews_project_id"), "mask_reviews", ["project_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_mask_reviews_project_id"), table_name="mask_reviews")
    op.drop_table("mask_reviews")
