"""Checkpoint rows. Files are handled by workbench.runner.checkpoints; this module only records them."""

from __future__ import annotations

from sqlalchemy import Engine, delete, insert
from sqlmodel import select

from workbench.store.engine import session
from workbench.store.models import Checkpoint, CheckpointCreate, CheckpointRead


def add_checkpoint(engine: Engine, *, run_id: str, checkpoint_in: CheckpointCreate) -> int:
    """Record a written checkpoint; returns its id."""
    with engine.begin() as conn:
        result = conn.execute(insert(Checkpoint).returning(Checkpoint.id), {**checkpoint_in.model_dump(), "run_id": run_id})  # type: ignore[arg-type]
        return int(result.scalar_one())


def delete_checkpoint(engine: Engine, *, checkpoint_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(Checkpoint).where(Checkpoint.id == checkpoint_id))  # type: ignore[arg-type]


def list_checkpoints(engine: Engine, *, run_id: str) -> list[CheckpointRead]:
    with session(engine) as s:
        rows = s.exec(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step, Checkpoint.id)).all()  # type: ignore[arg-type]
        return [CheckpointRead.model_validate(r, from_attributes=True) for r in rows]


def get_checkpoint(engine: Engine, *, checkpoint_id: int) -> CheckpointRead | None:
    with session(engine) as s:
        row = s.get(Checkpoint, checkpoint_id)
        return CheckpointRead.model_validate(row, from_attributes=True) if row else None
