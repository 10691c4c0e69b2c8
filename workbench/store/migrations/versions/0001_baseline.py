"""Baseline: the schema `SQLModel.metadata.create_all` made before the store was versioned (commit c1f55c2).

A store made then has no alembic_version table; `workbench db upgrade` stamps it at this revision and goes on.
The DDL is written out here, not taken from the models, so later model changes never change what this revision is.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ["queued", "starting", "running", "completed", "failed", "cancelled", "lost"]


def upgrade() -> None:
    op.create_table(
        "run",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("supervisor_pid", sa.Integer(), nullable=True),
        sa.Column("supervisor_start", sa.Float(), nullable=True),
        sa.Column("worker_pid", sa.Integer(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("exit_signal", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("traceback", sa.String(), nullable=True),
        sa.Column("progress_done", sa.Float(), nullable=True),
        sa.Column("progress_total", sa.Float(), nullable=True),
        sa.Column("progress_unit", sa.String(), nullable=True),
        sa.Column("progress_started_at", sa.Float(), nullable=True),
        sa.Column("progress_done_at_start", sa.Float(), nullable=True),
        sa.Column("phase", sa.String(), nullable=True),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("notes", sa.String(), nullable=False),
        sa.Column("parent_run_id", sa.String(), nullable=True),
        sa.Column("parent_checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("monitor_key", sa.String(), nullable=True),
        sa.Column("monitor_mode", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("eval_data", sa.String(), nullable=True),
        sa.Column("id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="ck_run_status"),
        sa.CheckConstraint("kind IN ('train', 'evaluate', 'import')", name="ck_run_kind"),
    )
    op.create_index("ix_run_created", "run", ["created_at"])
    op.create_index("ix_run_status", "run", ["status"])
    op.create_index("ix_run_parent_run_id", "run", ["parent_run_id"])
    op.create_index("ix_run_task", "run", ["task"])

    op.create_table(
        "metric",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("wall", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_metric_series", "metric", ["run_id", "key", "step", "value"])

    op.create_table(
        "metric_summary",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("first_step", sa.Integer(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
    )

    op.create_table(
        "metric_rollup",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("step_max", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("vmin", sa.Float(), nullable=False),
        sa.Column("vmax", sa.Float(), nullable=False),
        sa.Column("wall", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", "level", "bucket"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sqlite_with_rowid=False,  # rows live in the primary-key b-tree (SQLite only; ignored elsewhere)
    )

    op.create_table(
        "checkpoint",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("pass_id", sa.Integer(), nullable=True),
        sa.Column("day", sa.String(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint("kind IN ('checkpoint','best','base','delta','batch','inference')", name="ck_ckpt_kind"),
        sa.UniqueConstraint("run_id", "path", name="uq_ckpt_path"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_checkpoint_run_id", "checkpoint", ["run_id"])

    op.create_table(
        "event",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_event_run_id", "event", ["run_id"])


def downgrade() -> None:
    for table in ("event", "checkpoint", "metric_rollup", "metric_summary", "metric", "run"):
        op.drop_table(table)
