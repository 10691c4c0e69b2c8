"""Studies: the `study` table, and run.study_id / run.trial_number for the runs that are a study's trials.

Optuna's own records of a study live in a journal file beside the runs (workbench/studies/optuna_io.py), not here.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("base_config", sa.JSON(), nullable=False),
        sa.Column("space", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("objective", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("driver_pid", sa.Integer(), nullable=True),
        sa.Column("driver_start", sa.Float(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'completed', 'cancelled', 'failed')", name="ck_study_status"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_study_task", "study", ["task"])
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("study_id", sa.String(), nullable=True))
        batch.add_column(sa.Column("trial_number", sa.Integer(), nullable=True))
        batch.create_index("ix_run_study_id", ["study_id"])


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_index("ix_run_study_id")
        batch.drop_column("trial_number")
        batch.drop_column("study_id")
    op.drop_index("ix_study_task", table_name="study")
    op.drop_table("study")
