"""Applying a run's journal records to the store, exactly once.

A run writes what it records to `runs/<id>/journal.jsonl` first (workbench/runner/journal.py); this module applies
those records. A batch of records goes in one transaction together with `run.journal_seq`, the seq of the last
record applied, so a batch is stored completely or not at all, and replaying a journal twice stores nothing twice.

The transaction starts with a compare-and-set of `journal_seq`: two appliers of one run (the worker's sync thread and
a `workbench sync`) cannot both apply the same records; the one that loses the race gets False and reads the new
`journal_seq` before it tries again.

Records are plain dicts parsed from JSON (`seq` and `t`, the type, plus the fields of that type):
- `metrics`: points [[key, step, value, wall], ...]
- `progress`: done, total, unit; started_at and done_at_start on the first report of an attempt (for the ETA)
- `phase`: text (None clears it)
- `event`: time, kind, message
- `ckpt_add`: the checkpoint row's fields (path, kind, step, epoch, metrics, size_bytes, sha256, created_at,
  pass_id, day); a row at the same path is replaced. Rows are found by (run_id, path), which is unique: the id
  a row gets is only known once the record is applied.
- `ckpt_del`: path
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, insert, select, update

from workbench.store.metrics import write_points
from workbench.store.models import Checkpoint, Event, Run

CHECKPOINT_FIELDS = ("path", "kind", "step", "epoch", "metrics", "size_bytes", "sha256", "created_at", "pass_id", "day")


class UnknownRecord(ValueError):
    pass


def journal_seq(engine: Engine, run_id: str) -> int:
    """The seq of the last journal record of `run_id` in the store (0: none yet)."""
    with engine.connect() as conn:
        seq = conn.execute(select(Run.journal_seq).where(Run.id == run_id)).scalar_one_or_none()  # type: ignore[arg-type]
    if seq is None:
        raise LookupError(f"no run {run_id!r} in the store")
    return int(seq)


def apply_records(engine: Engine, run_id: str, *, expected_seq: int, records: Sequence[dict[str, Any]]) -> bool:
    """Apply `records` (seq ascending, all > expected_seq) in one transaction and set journal_seq to the last seq.

    False, with nothing changed, if the run's journal_seq is no longer `expected_seq` (another applier was first).
    """
    if not records:
        return True
    last = int(records[-1]["seq"])
    with engine.begin() as conn:
        # first statement: takes the run row's lock (PostgreSQL) / the write lock (SQLite) before any insert
        cas = conn.execute(
            update(Run).where(and_(Run.id == run_id, Run.journal_seq == expected_seq)).values(journal_seq=last)  # type: ignore[arg-type]
        )
        if cas.rowcount != 1:
            return False
        for record in records:
            _apply(conn, run_id, record)
    return True


def _apply(conn: Connection, run_id: str, record: dict[str, Any]) -> None:
    kind = record["t"]
    if kind == "metrics":
        write_points(conn, run_id=run_id, points=[tuple(p) for p in record["points"]])  # type: ignore[misc]
    elif kind == "progress":
        values = {"progress_done": record["done"], "progress_total": record["total"], "progress_unit": record["unit"]}
        if record.get("started_at") is not None:
            values.update(progress_started_at=record["started_at"], progress_done_at_start=record["done_at_start"])
        conn.execute(update(Run).where(Run.id == run_id).values(**values))  # type: ignore[arg-type]
    elif kind == "phase":
        conn.execute(update(Run).where(Run.id == run_id).values(phase=record["text"]))  # type: ignore[arg-type]
    elif kind == "event":
        conn.execute(insert(Event.__table__), [{"run_id": run_id, "time": record["time"], "kind": record["kind"], "message": record["message"]}])
    elif kind == "ckpt_add":
        row = {name: record.get(name) for name in CHECKPOINT_FIELDS}
        row["metrics"] = row["metrics"] or {}
        _delete_checkpoint_row(conn, run_id, row["path"])
        conn.execute(insert(Checkpoint.__table__), [{"run_id": run_id, **row}])
    elif kind == "ckpt_del":
        _delete_checkpoint_row(conn, run_id, record["path"])
    else:
        raise UnknownRecord(f"journal record {record['seq']} of run {run_id} has an unknown type {kind!r}")


def _delete_checkpoint_row(conn: Connection, run_id: str, path: str) -> None:
    conn.execute(delete(Checkpoint).where(and_(Checkpoint.run_id == run_id, Checkpoint.path == path)))  # type: ignore[arg-type]
