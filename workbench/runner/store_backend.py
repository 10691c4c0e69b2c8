"""RunBackend on the store, journal first: what a real run's context writes to.

Every record goes to the run's journal (runner/journal.py) and returns at once; the journal's sync thread applies it
to the store. So a step never waits on the database, and the store may be away for a while without a record being
lost. `close()` applies what is left, waiting up to `end_wait_s` for the store, and says how many records it could
not store: the worker must not call a run `completed` while some are missing.

Progress is a latest value, not a history: `set_progress` only keeps it, and the sync thread writes it as a record
before each sync when it changed (a task reports progress every step; one record per step would bloat the journal).

Checkpoint rows are known by their path (unique per run): the row id only exists once the record is applied, so
the checkpoint list this backend answers is its own view (the store's rows at start, plus what it journaled since).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from sqlalchemy import Engine

from workbench.runner.checkpoints import CheckpointInfo
from workbench.runner.journal import JournalSync, JournalWriter, Replayer, journal_path, read_records
from workbench.store import checkpoints as ckpt_store
from workbench.store import journal as store_journal


class StoreBackend:
    def __init__(
        self,
        engine: Engine,
        run_id: str,
        run_dir: Path,
        *,
        logger: logging.Logger | None = None,
        sync_interval: float = 0.5,
        outage_warn_s: float = 60.0,
        end_wait_s: float = 120.0,
    ):
        """Apply what an earlier attempt left in the journal (the store must be reachable at start), then open it."""
        self.engine = engine
        self.run_id = run_id
        self.end_wait_s = end_wait_s
        replayer = Replayer(engine, run_id, journal_path(run_dir))
        replayer.apply_pending()
        assert replayer.applied_seq is not None
        self.journal = JournalWriter(journal_path(run_dir), start_after=replayer.applied_seq)
        self._lock = threading.Lock()
        self._checkpoints = {c.path: c for c in stored_checkpoints(engine, run_id)}
        self._progress: tuple[float, float | None, str] | None = None
        self._progress_written: tuple[float, float | None, str] | None = None
        self._progress_origin: tuple[float, float] | None = None
        self._closed: int | None = None  # close()'s answer, once closed
        self.sync = JournalSync(
            replayer, self.journal, interval=sync_interval, outage_warn_s=outage_warn_s, logger=logger, before_sync=self._journal_progress
        )
        self.sync.start()

    def write_metrics(self, points: list[tuple[str, int, float, float]]) -> None:
        self.journal.append("metrics", points=points)
        self.sync.nudge()

    def set_progress(self, done: float, total: float | None, unit: str) -> None:
        self._progress = (done, total, unit)  # one assignment: the training thread calls this every step

    def _journal_progress(self) -> None:
        latest = self._progress
        if latest is None or latest == self._progress_written:
            return
        fields: dict[str, object] = {}
        if self._progress_origin is None:
            # the ETA counts from this attempt's first report, so a resumed run's earlier work does not skew it
            self._progress_origin = (time.time(), latest[0])
            fields["started_at"], fields["done_at_start"] = self._progress_origin
        self.journal.append("progress", done=latest[0], total=latest[1], unit=latest[2], **fields)
        self._progress_written = latest

    def set_phase(self, text: str | None) -> None:
        self.journal.append("phase", text=text)

    def event(self, kind: str, message: str) -> None:
        self.journal.append("event", time=time.time(), kind=kind, message=message)

    def add_checkpoint(self, info: CheckpointInfo) -> None:
        with self._lock:
            self.journal.append("ckpt_add", durable=True, **_row_fields(info))
            self._checkpoints[info.path] = info

    def delete_checkpoint(self, path: str) -> None:
        with self._lock:
            self.journal.append("ckpt_del", path=path)
            self._checkpoints.pop(path, None)

    def list_checkpoints(self) -> list[CheckpointInfo]:
        with self._lock:
            return list(self._checkpoints.values())

    def close(self) -> int:
        """Write the last progress, fsync the journal, and store what is left (waiting up to end_wait_s for the
        store). Returns how many records are only in the journal (0: all stored)."""
        if self._closed is None:
            self._closed = self.sync.close(self.end_wait_s)  # its last sync writes the latest progress first
            self.journal.close()
        return self._closed


def stored_checkpoints(engine: Engine, run_id: str, run_dir: Path | None = None) -> list[CheckpointInfo]:
    """The run's checkpoint rows; with `run_dir`, as its journal has them (records not applied yet included), for
    a process that reads them beside the one that applies them (ranks > 0 at a resume). Rows are keyed by path,
    so a record applied meanwhile and applied again here changes nothing."""
    seq = store_journal.journal_seq(engine, run_id) if run_dir is not None else 0  # before the rows: see above
    view = {c.path: to_info(c) for c in ckpt_store.list_checkpoints(engine, run_id=run_id)}
    if run_dir is not None:
        offset = 0
        while True:
            records, end = read_records(journal_path(run_dir), offset=offset, after_seq=seq)
            if end == offset:
                break
            for r in records:
                if r["t"] == "ckpt_add":
                    view[r["path"]] = _info_of(r)
                elif r["t"] == "ckpt_del":
                    view.pop(r["path"], None)
            offset = end
    return list(view.values())


def _row_fields(info: CheckpointInfo) -> dict[str, object]:
    return {
        "path": info.path,
        "kind": info.kind,
        "step": info.step,
        "epoch": info.epoch,
        "metrics": info.metrics,
        "size_bytes": info.size_bytes,
        "sha256": info.sha256,
        "created_at": info.created,
        "pass_id": info.pass_id,
        "day": info.day,
    }


def _info_of(record: dict) -> CheckpointInfo:  # type: ignore[type-arg]
    return CheckpointInfo(
        path=record["path"],
        kind=record["kind"],
        step=record["step"],
        epoch=record["epoch"],
        metrics=dict(record["metrics"] or {}),
        size_bytes=record["size_bytes"],
        sha256=record["sha256"],
        created=record["created_at"],
        pass_id=record["pass_id"],
        day=record["day"],
    )


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
