"""Run events: the lifecycle log the UI shows (launched, resumed, cancel requested, ...). Status events are
written by runs.transition, in the same transaction as the status."""

from __future__ import annotations

from sqlalchemy import Engine, insert
from sqlmodel import select

from workbench.store.engine import session
from workbench.store.models import Event, EventCreate, EventRead


def add_event(engine: Engine, *, run_id: str, event_in: EventCreate) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Event), [{**event_in.model_dump(), "run_id": run_id}])


def list_events(engine: Engine, *, run_id: str, limit: int = 200) -> list[EventRead]:
    with session(engine) as s:
        rows = s.exec(select(Event).where(Event.run_id == run_id).order_by(Event.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
        return [EventRead.model_validate(r, from_attributes=True) for r in reversed(rows)]
