"""detector_versions and detector_proposals: the semi-automatic stage's box detector.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 00:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "detector_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "training",
                "ready",
                "failed",
                "archived",
                name="detector_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("train_image_ids", sa.JSON(), nullable=False),
        sa.Column("heldout_image_ids", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_detector_versions_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_detector_versions_model_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_detector_versions_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_detector_versions_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detector_versions")),
    )
    op.create_index(op.f("ix_detector_versions_project_id"), "detector_versions", ["project_id"])
    op.create_table(
        "detector_proposals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("detector_version_id", sa.Integer(), nullable=True),
        sa.Column("boxes", sa.Integer(), nullable=False),
        sa.Column("masks", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_detector_proposals_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_detector_proposals_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["detector_version_id"],
            ["detector_versions.id"],
            name=op.f("fk_detector_proposals_detector_version_id_detector_versions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detector_proposals")),
        sa.UniqueConstraint("image_id", name=op.f("uq_detector_proposals_image_id")),
    )
    op.create_index(op.f("ix_detector_proposals_project_id"), "detector_proposals", ["project_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_detector_proposals_project_id"), table_name="detector_proposals")
    op.drop_table("detector_proposals")
    op.drop_index(op.f("ix_detector_versions_project_id"), table_name="detector_versions")
    op.drop_table("detector_versions")
