"""Runs: create, read, list, update, and the one status-changing function. Each function is one transaction."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, update
from sqlmodel import select

from workbench.ids import new_run_id
from workbench.store.engine import by_id_or_prefix, session
from workbench.store.models import (
    ACTIVE,
    ENDED,
    Checkpoint,
    CheckpointCreate,
    Event,
    Metric,
    MetricRollup,
    MetricSummary,
    Run,
    RunCreate,
    RunRead,
    RunStatus,
    RunUpdate,
)
from workbench.tags import clean_tags

S = RunStatus
# status -> statuses it may move to. Everything else is a bug and raises.
TRANSITIONS: dict[RunStatus, tuple[RunStatus, ...]] = {
    S.QUEUED: (S.STARTING, S.CANCELLED, S.FAILED),
    S.STARTING: (S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLED, S.LOST),
    S.RUNNING: (S.COMPLETED, S.FAILED, S.CANCELLED, S.LOST, S.PRUNED),
    S.COMPLETED: (),
    S.FAILED: (S.QUEUED,),  # resume
    S.CANCELLED: (S.QUEUED,),
    S.LOST: (S.QUEUED,),
    S.PRUNED: (),
}


class IllegalTransition(RuntimeError):
    pass


class RunNotFound(LookupError):
    pass


def _insert_event(conn: Connection, *, run_id: str, kind: str, message: str, at: float | None = None) -> None:
    conn.execute(insert(Event), [{"run_id": run_id, "time": at or time.time(), "kind": str(kind), "message": message}])


def _new_row(run_in: RunCreate, **values: Any) -> dict[str, Any]:
    """Every column of a new run: the table model fills the defaults that a Core insert would leave NULL."""
    fields = {**run_in.model_dump(exclude={"id"}), "tags": clean_tags(run_in.tags)}
    row = Run(**fields, id=run_in.id or new_run_id(), created_at=time.time(), **values)
    return {**row.model_dump(), "status": str(row.status)}


def create_run(engine: Engine, *, run_in: RunCreate) -> RunRead:
    """Insert a run as `queued`, with its `queued` event."""
    row = _new_row(run_in, status=RunStatus.QUEUED)
    what = "evaluation" if run_in.kind == "evaluate" else "run"
    with engine.begin() as conn:
        conn.execute(insert(Run), [row])
        _insert_event(conn, run_id=row["id"], kind=RunStatus.QUEUED, message=f"{run_in.task} {what} created", at=row["created_at"])
    return get_run(engine, run_id=row["id"])


def create_imported_run(engine: Engine, *, run_in: RunCreate, checkpoint_in: CheckpointCreate) -> RunRead:
    """An imported checkpoint's run: inserted `completed` with its checkpoint row and event, all in one
    transaction, so no scheduler ever sees it queued. The checkpoint file must be written before."""
    if run_in.kind != "import":
        raise ValueError(f"create_imported_run makes `import` runs, not {run_in.kind!r} ones")
    row = _new_row(run_in, status=RunStatus.COMPLETED)
    row["started_at"] = row["ended_at"] = row["created_at"]
    with engine.begin() as conn:
        conn.execute(insert(Run), [row])
        conn.execute(insert(Checkpoint), [{**checkpoint_in.model_dump(), "run_id": row["id"]}])
        _insert_event(conn, run_id=row["id"], kind=RunStatus.COMPLETED, message=f"checkpoint imported: {checkpoint_in.path}")
    return get_run(engine, run_id=row["id"])


def get_status(engine: Engine, *, run_id: str) -> RunStatus | None:
    """Just the status of a run (exact id): a one-column read for tight polling. None if there is no such run."""
    with engine.connect() as conn:
        status = conn.execute(select(Run.status).where(Run.id == run_id)).scalar_one_or_none()  # type: ignore[arg-type]
    return None if status is None else RunStatus(status)


def get_statuses(engine: Engine, *, run_ids: list[str]) -> dict[str, RunStatus]:
    """Status of each listed run that exists, in one two-column read (the Runs page polls it while runs are active)."""
    if not run_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(select(Run.id, Run.status).where(Run.id.in_(run_ids)))  # type: ignore[attr-defined]
        return {run_id: RunStatus(status) for run_id, status in rows}


def get_run(engine: Engine, *, run_id: str) -> RunRead:
    """A run by id, or by a unique prefix of its id (as git does for commits)."""
    with session(engine) as s:
        run = by_id_or_prefix(s, Run, run_id, not_found=RunNotFound, what="run")
        read = RunRead.model_validate(run, from_attributes=True)
        if read.monitor_key:
            summary = s.get(MetricSummary, (read.id, read.monitor_key))
            if summary is not None:
                read.best_value = summary.max if read.monitor_mode == "max" else summary.min
        return read


def list_runs(
    engine: Engine,
    *,
    task: str | None = None,
    statuses: Iterable[RunStatus | str] | None = None,
    text: str | None = None,
    tag: str | None = None,
    since: float | None = None,
    parent_run_id: str | None = None,
    limit: int = 500,
) -> list[RunRead]:
    """Runs, newest first. `text` matches id, name, notes or owner, ignoring case on both backends."""
    with session(engine) as s:
        q = select(Run)
        if task:
            q = q.where(Run.task == task)
        if statuses:
            q = q.where(Run.status.in_([RunStatus(x).value for x in statuses]))  # type: ignore[attr-defined]
        if text:
            like = f"%{text}%"
            q = q.where(or_(Run.id.ilike(like), Run.name.ilike(like), Run.notes.ilike(like), Run.owner.ilike(like)))  # type: ignore[attr-defined,union-attr]
        if since is not None:
            q = q.where(Run.created_at >= since)
        if parent_run_id is not None:
            q = q.where(Run.parent_run_id == parent_run_id)
        q = q.order_by(Run.created_at.desc()).limit(limit)  # type: ignore[attr-defined]
        runs = [RunRead.model_validate(r, from_attributes=True) for r in s.exec(q).all()]
        if tag and tag.strip():
            runs = [r for r in runs if tag.strip() in clean_tags(r.tags)]  # rows stored before tags were cleaned too
        if runs:
            ids = [r.id for r in runs]
            summaries = s.exec(select(MetricSummary).where(MetricSummary.run_id.in_(ids))).all()  # type: ignore[attr-defined]
            by_key = {(m.run_id, m.key): m for m in summaries}
            for r in runs:
                m = by_key.get((r.id, r.monitor_key or ""))
                if m is not None:
                    r.best_value = m.max if r.monitor_mode == "max" else m.min
        return runs


def active_runs(engine: Engine) -> list[RunRead]:
    """Runs a supervisor owns (models.ACTIVE): each takes a slot."""
    return list_runs(engine, statuses=ACTIVE, limit=10_000)


def queued_runs(engine: Engine) -> list[RunRead]:
    """Queued runs, oldest first."""
    runs = list_runs(engine, statuses=[RunStatus.QUEUED], limit=10_000)
    return sorted(runs, key=lambda r: r.created_at)


def _where(run_id: str, on_attempt: int | None) -> Any:
    return Run.id == run_id if on_attempt is None else and_(Run.id == run_id, Run.attempt == on_attempt)


def update_run(engine: Engine, *, run_id: str, run_in: RunUpdate, on_attempt: int | None = None) -> bool:
    """Write the fields set in `run_in` (progress, pids, heartbeat, tags, ...). Status changes go through
    `transition`. With `on_attempt`, only while the run is still on that attempt (a finished supervisor must not
    touch a resumed run). Returns whether a run was changed."""
    values = run_in.model_dump(exclude_unset=True)
    if not values:
        return False
    with engine.begin() as conn:
        return conn.execute(update(Run).where(_where(run_id, on_attempt)).values(**values)).rowcount == 1


def claim_for_supervisor(engine: Engine, *, run_id: str, attempt: int, pid: int, process_start: float) -> bool:
    """A supervisor takes its run: only a `starting` run on `attempt` that no other supervisor process has taken
    (the scheduler may already have recorded this process's pid). Compare-and-set; False: not this supervisor's run."""
    now = time.time()
    cond = and_(
        Run.id == run_id,
        Run.status == RunStatus.STARTING.value,
        Run.attempt == attempt,
        Run.supervisor_start.is_(None),  # type: ignore[union-attr]
        or_(Run.supervisor_pid.is_(None), Run.supervisor_pid == pid),  # type: ignore[union-attr]
    )
    values = {"supervisor_pid": pid, "supervisor_start": process_start, "started_at": now, "heartbeat_at": now}
    with engine.begin() as conn:
        return conn.execute(update(Run).where(cond).values(**values)).rowcount == 1


def transition(
    engine: Engine,
    *,
    run_id: str,
    to: RunStatus,
    message: str = "",
    expect: Iterable[RunStatus] | None = None,
    on_attempt: int | None = None,
    run_in: RunUpdate | None = None,
) -> bool:
    """Move a run to status `to`, set the fields of `run_in`, and write the event, in one transaction
    (compare-and-set on the current status; with `on_attempt`, also on the attempt).

    Returns False if another process moved the run first (the current status is no longer one that may go to
    `to`, or not one of `expect`). Raises IllegalTransition if the move is never allowed from the status the run
    has now (only when neither `expect` nor `on_attempt` says a lost race is expected).
    """
    to = RunStatus(to)
    allowed_from = [s for s, tos in TRANSITIONS.items() if to in tos]
    if expect is not None:
        expected = {RunStatus(s) for s in expect}
        allowed_from = [s for s in allowed_from if s in expected]
    now = time.time()
    values: dict[str, Any] = {**(run_in.model_dump(exclude_unset=True) if run_in else {}), "status": to.value}
    if to in ENDED:
        values.setdefault("ended_at", now)
    cond = and_(_where(run_id, on_attempt), Run.status.in_([s.value for s in allowed_from]))  # type: ignore[attr-defined]
    with engine.begin() as conn:
        if conn.execute(update(Run).where(cond).values(**values)).rowcount == 1:
            _insert_event(conn, run_id=run_id, kind=to, message=message, at=now)
            return True
        current = conn.execute(select(Run.status).where(Run.id == run_id)).scalar_one_or_none()  # type: ignore[arg-type]
    if current is None:
        raise RunNotFound(f"no run {run_id!r}")
    current = RunStatus(current)
    if expect is None and on_attempt is None and current != to and to not in TRANSITIONS[current]:
        raise IllegalTransition(f"run {run_id}: {current} -> {to} is not allowed")
    return False


def delete_run_rows(engine: Engine, *, run_id: str) -> None:
    with engine.begin() as conn:
        for table in (Metric, MetricRollup, MetricSummary, Checkpoint, Event):
            conn.execute(delete(table).where(table.run_id == run_id))  # type: ignore[arg-type]
        conn.execute(delete(Run).where(Run.id == run_id))  # type: ignore[arg-type]


def count_by_status(engine: Engine) -> dict[RunStatus, int]:
    with session(engine) as s:
        rows = s.exec(select(Run.status, func.count()).group_by(Run.status)).all()
        return {RunStatus(status): n for status, n in rows}
