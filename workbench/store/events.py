"""Run events: the lifecycle log the UI shows (launched, resumed, cancel requested, ...)."""

from __future__ import annotations

import time

from sqlalchemy import Engine, insert
from sqlmodel import select

from workbench.store.engine import session
from workbench.store.models import Event, EventRead


def add_event(engine: Engine, *, run_id: str, kind: str, message: str = "") -> None:
    with engine.begin() as conn:
        conn.execute(insert(Event.__table__), [{"run_id": run_id, "time": time.time(), "kind": kind, "message": message}])


def list_events(engine: Engine, *, run_id: str, limit: int = 200) -> list[EventRead]:
    with session(engine) as s:
        rows = s.exec(select(Event).where(Event.run_id == run_id).order_by(Event.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
        return [EventRead.model_validate(r, from_attributes=True) for r in reversed(rows)]
