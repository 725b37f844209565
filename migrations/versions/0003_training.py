"""Training: datasets and versions, pinned run datasets, metrics, progress, checkpoints, provenance

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _run_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE")


def upgrade() -> None:
    with op.batch_alter_table("run_attempts") as batch:
        batch.add_column(sa.Column("last_step", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("resumed_from_step", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("steps_lost", sa.BigInteger(), nullable=True))
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "name", name="uq_datasets_org_id_name"),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("storage_key", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("files", JSON_DOCUMENT, nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_dataset_id_version"),
        sa.UniqueConstraint("dataset_id", "digest", name="uq_dataset_versions_dataset_id_digest"),
    )
    # A bare `sha256:...` reference in a run spec is looked up by digest within the org.
    op.create_index("ix_dataset_versions_org_id_digest", "dataset_versions", ["org_id", "digest"])
    op.create_table(
        "run_datasets",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("dataset_version_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        _run_fk(),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"], ["dataset_versions.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "name"),
    )
    op.create_table(
        "metric_points",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("id"),
    )
    # Every read is one series of one run in step order.
    op.create_index(
        "ix_metric_points_run_id_name_step", "metric_points", ["run_id", "name", "step"]
    )
    op.create_table(
        "run_progress",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=True),
        sa.Column("total_steps", sa.BigInteger(), nullable=True),
        sa.Column("latest", JSON_DOCUMENT, nullable=False),
        sa.Column("last_heartbeat_at", TIMESTAMP, nullable=True),
        sa.Column("rate_step", sa.BigInteger(), nullable=True),
        sa.Column("rate_at", TIMESTAMP, nullable=True),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("files", JSON_DOCUMENT, nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("metrics", JSON_DOCUMENT, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id", "step"),
    )
    op.create_table(
        "run_provenance",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("record", JSON_DOCUMENT, nullable=False),
        sa.Column("frozen_at", TIMESTAMP, nullable=False),
        _run_fk(),
        sa.PrimaryKeyConstraint("run_id"),
    )


def downgrade() -> None:
    op.drop_table("run_provenance")
    op.drop_table("checkpoints")
    op.drop_table("run_progress")
    op.drop_index("ix_metric_points_run_id_name_step", table_name="metric_points")
    op.drop_table("metric_points")
    op.drop_table("run_datasets")
    op.drop_index("ix_dataset_versions_org_id_digest", table_name="dataset_versions")
    op.drop_table("dataset_versions")
    op.drop_table("datasets")
    with op.batch_alter_table("run_attempts") as batch:
        batch.drop_column("steps_lost")
        batch.drop_column("resumed_from_step")
        batch.drop_column("last_step")
