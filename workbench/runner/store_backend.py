"""RunBackend on the store: what a real run's context writes to."""

from __future__ import annotations

import time
from dataclasses import asdict

from sqlalchemy import Engine

from workbench.runner.checkpoints import CheckpointInfo
from workbench.store import checkpoints as ckpt_store
from workbench.store import events, metrics, runs
from workbench.store.models import CheckpointCreate, EventCreate, RunUpdate


class StoreBackend:
    def __init__(self, engine: Engine, run_id: str):
        self.engine = engine
        self.run_id = run_id
        self._progress_origin: tuple[float, float] | None = None

    def write_metrics(self, points: list[tuple[str, int, float, float]]) -> None:
        metrics.write_metrics(self.engine, run_id=self.run_id, points=points)  # raises if the points were not stored

    def set_progress(self, done: float, total: float | None, unit: str) -> None:
        origin: dict[str, float] = {}
        if self._progress_origin is None:
            # the ETA counts from this attempt's first report, so a resumed run's earlier work does not skew it
            self._progress_origin = (time.time(), done)
            origin = {"progress_started_at": self._progress_origin[0], "progress_done_at_start": done}
        update = RunUpdate(progress_done=done, progress_total=total, progress_unit=unit, **origin)
        runs.update_run(self.engine, run_id=self.run_id, run_in=update)

    def set_phase(self, text: str | None) -> None:
        runs.update_run(self.engine, run_id=self.run_id, run_in=RunUpdate(phase=text))

    def event(self, kind: str, message: str) -> None:
        events.add_event(self.engine, run_id=self.run_id, event_in=EventCreate(kind=kind, message=message))

    def add_checkpoint(self, info: CheckpointInfo) -> int:
        fields = asdict(info)
        fields.pop("id")
        fields["created_at"] = fields.pop("created")
        return ckpt_store.add_checkpoint(self.engine, run_id=self.run_id, checkpoint_in=CheckpointCreate(**fields))

    def delete_checkpoint(self, checkpoint_id: int) -> None:
        ckpt_store.delete_checkpoint(self.engine, checkpoint_id=checkpoint_id)

    def list_checkpoints(self) -> list[CheckpointInfo]:
        return [to_info(c) for c in ckpt_store.list_checkpoints(self.engine, run_id=self.run_id)]


def to_info(c: ckpt_store.CheckpointRead) -> CheckpointInfo:
    return CheckpointInfo(
        path=c.path,
        kind=c.kind,
        step=c.step,
        epoch=c.epoch,
        metrics=dict(c.metrics),
        size_bytes=c.size_bytes,
        sha256=c.sha256,
        created=c.created_at,
        pass_id=c.pass_id,
        day=c.day,
        id=c.id,
    )
