"""run.host (the machine whose supervisor runs the run), run.journal_seq (the last journal record applied to the
store), and `pruned` among the allowed run statuses (a study trial stopped by its pruner).

SQLite cannot alter a CHECK constraint: the batch block copies `run` into a new table with the new constraint
(schema.py runs migrations with foreign keys off, so dropping the old `run` does not cascade to its rows elsewhere).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD_STATUSES = ["queued", "starting", "running", "completed", "failed", "cancelled", "lost"]
NEW_STATUSES = [*OLD_STATUSES, "pruned"]


def _status_check(statuses: list[str]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("host", sa.String(), nullable=True))
        batch.add_column(sa.Column("journal_seq", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch.drop_constraint("ck_run_status", type_="check")
        batch.create_check_constraint("ck_run_status", _status_check(NEW_STATUSES))


def downgrade() -> None:
    op.execute("UPDATE run SET status = 'failed' WHERE status = 'pruned'")
    with op.batch_alter_table("run") as batch:
        batch.drop_constraint("ck_run_status", type_="check")
        batch.create_check_constraint("ck_run_status", _status_check(OLD_STATUSES))
        batch.drop_column("journal_seq")
        batch.drop_column("host")
