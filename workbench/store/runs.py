"""Runs: create, read, list, update, and the one status-changing function."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, and_, delete, func, or_, update
from sqlmodel import select

from workbench.ids import new_run_id
from workbench.store.engine import session
from workbench.store.events import add_event
from workbench.store.models import ACTIVE_STATUSES, MetricSummary, Run, RunRead

# status -> statuses it may move to. Everything else is a bug and raises.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "queued": ("starting", "cancelled", "failed"),
    "starting": ("running", "completed", "failed", "cancelled", "lost"),
    "running": ("completed", "failed", "cancelled", "lost"),
    "completed": (),
    "failed": ("queued",),  # resume
    "cancelled": ("queued",),
    "lost": ("queued",),
}


class IllegalTransition(RuntimeError):
    pass


class RunNotFound(LookupError):
    pass


def create_run(
    engine: Engine,
    *,
    task: str,
    name: str,
    config: dict[str, Any],
    monitor: tuple[str, str],
    owner: str | None = None,
    tags: list[str] | None = None,
    notes: str = "",
    parent_run_id: str | None = None,
    parent_checkpoint_id: int | None = None,
    kind: str = "train",
    eval_data: str | None = None,
    run_id: str | None = None,
    host: str | None = None,
) -> RunRead:
    run = Run(
        host=host,
        kind=kind,
        eval_data=eval_data,
        id=run_id or new_run_id(),
        name=name,
        task=task,
        status="queued",
        config=config,
        created_at=time.time(),
        owner=owner,
        tags=tags or [],
        notes=notes,
        parent_run_id=parent_run_id,
        parent_checkpoint_id=parent_checkpoint_id,
        monitor_key=monitor[0],
        monitor_mode=monitor[1],
    )
    with session(engine) as s:
        s.add(run)
        s.commit()
        s.refresh(run)
        out = RunRead.model_validate(run, from_attributes=True)
    what = "evaluation" if kind == "evaluate" else "run"
    add_event(engine, run_id=out.id, kind="queued", message=f"{task} {what} created")
    return out


def get_status(engine: Engine, run_id: str) -> str | None:
    """Just the status of a run (exact id): a one-column read for tight polling. None if there is no such run."""
    with engine.connect() as conn:
        return conn.execute(select(Run.status).where(Run.id == run_id)).scalar_one_or_none()  # type: ignore[arg-type]


def get_run(engine: Engine, run_id: str) -> RunRead:
    with session(engine) as s:
        run = s.get(Run, run_id)
        if run is None:
            # allow a unique prefix, as git does for commits
            matches = s.exec(select(Run).where(Run.id.startswith(run_id))).all()  # type: ignore[attr-defined]
            if len(matches) != 1:
                raise RunNotFound(f"no run {run_id!r}" if not matches else f"{run_id!r} matches {len(matches)} runs")
            run = matches[0]
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
    statuses: list[str] | None = None,
    text: str | None = None,
    tag: str | None = None,
    since: float | None = None,
    parent_run_id: str | None = None,
    limit: int = 500,
) -> list[RunRead]:
    with session(engine) as s:
        q = select(Run)
        if task:
            q = q.where(Run.task == task)
        if statuses:
            q = q.where(Run.status.in_(statuses))  # type: ignore[attr-defined]
        if text:
            like = f"%{text}%"
            q = q.where(or_(Run.id.like(like), Run.name.like(like), Run.notes.like(like), Run.owner.like(like)))  # type: ignore[attr-defined,union-attr]
        if since is not None:
            q = q.where(Run.created_at >= since)
        if parent_run_id is not None:
            q = q.where(Run.parent_run_id == parent_run_id)
        q = q.order_by(Run.created_at.desc()).limit(limit)  # type: ignore[attr-defined]
        runs = [RunRead.model_validate(r, from_attributes=True) for r in s.exec(q).all()]
        if tag:
            runs = [r for r in runs if tag in r.tags]
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
    return list_runs(engine, statuses=["starting", "running"], limit=10_000)


def queued_runs(engine: Engine) -> list[RunRead]:
    runs = list_runs(engine, statuses=["queued"], limit=10_000)
    return sorted(runs, key=lambda r: r.created_at)


def update_run(engine: Engine, run_id: str, *, on_attempt: int | None = None, **fields: Any) -> None:
    """Set plain fields (progress, pids, heartbeat, tags, ...). Status changes go through `transition`.

    With `on_attempt`, only while the run is still on that attempt (a finished supervisor must not touch a resumed run).
    """
    if "status" in fields:
        raise ValueError("use transition() to change a run's status")
    cond = Run.id == run_id if on_attempt is None else and_(Run.id == run_id, Run.attempt == on_attempt)
    with engine.begin() as conn:
        conn.execute(update(Run).where(cond).values(**fields))


def claim_for_supervisor(engine: Engine, run_id: str, *, attempt: int, pid: int, process_start: float) -> bool:
    """A supervisor takes its run: only a `starting` run on `attempt` that no other supervisor process has taken
    (the scheduler may already have recorded this process's pid). Compare-and-set; False: not this supervisor's run."""
    now = time.time()
    cond = and_(
        Run.id == run_id,
        Run.status == "starting",
        Run.attempt == attempt,
        Run.supervisor_start.is_(None),  # type: ignore[union-attr]
        or_(Run.supervisor_pid.is_(None), Run.supervisor_pid == pid),  # type: ignore[union-attr]
    )
    values = {"supervisor_pid": pid, "supervisor_start": process_start, "started_at": now, "heartbeat_at": now}
    with engine.begin() as conn:
        return conn.execute(update(Run).where(cond).values(**values)).rowcount == 1


def transition(
    engine: Engine,
    run_id: str,
    to: str,
    *,
    message: str = "",
    expect: tuple[str, ...] | None = None,
    on_attempt: int | None = None,
    **fields: Any,
) -> bool:
    """Move a run to status `to` and write an event, atomically (compare-and-set on the current status).

    Returns False if another process moved the run first (the current status is no longer one that may go
    to `to`, or not one of `expect`). Raises IllegalTransition if the move is never allowed from the status
    the run has now.
    """
    allowed_from = tuple(s for s, tos in TRANSITIONS.items() if to in tos)
    if expect is not None:
        allowed_from = tuple(s for s in allowed_from if s in expect)
    now = time.time()
    values: dict[str, Any] = {"status": to, **fields}
    if to in ("completed", "failed", "cancelled", "lost"):
        values.setdefault("ended_at", now)
    cond = and_(Run.id == run_id, Run.status.in_(allowed_from))  # type: ignore[attr-defined]
    if on_attempt is not None:
        cond = and_(cond, Run.attempt == on_attempt)
    with engine.begin() as conn:
        res = conn.execute(update(Run).where(cond).values(**values))
        changed = res.rowcount == 1
    if not changed:
        current = get_run(engine, run_id).status
        if expect is None and on_attempt is None and current != to and to not in TRANSITIONS[current]:
            raise IllegalTransition(f"run {run_id}: {current} -> {to} is not allowed")
        return False
    add_event(engine, run_id=run_id, kind=to, message=message)
    return True


def delete_run_rows(engine: Engine, run_id: str) -> None:
    from workbench.store.models import Checkpoint, Event, Metric, MetricRollup

    with engine.begin() as conn:
        for table in (Metric, MetricRollup, MetricSummary, Checkpoint, Event):
            conn.execute(delete(table).where(table.run_id == run_id))  # type: ignore[arg-type]
        conn.execute(delete(Run).where(Run.id == run_id))


def count_by_status(engine: Engine) -> dict[str, int]:
    with session(engine) as s:
        rows = s.exec(select(Run.status, func.count()).group_by(Run.status)).all()
        return {status: n for status, n in rows}


def is_active(status: str) -> bool:
    return status in ACTIVE_STATUSES


def mark_imported(engine: Engine, run_id: str) -> None:
    """An imported checkpoint's run never trains: it is complete the moment its file is stored."""
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            update(Run).where(and_(Run.id == run_id, Run.kind == "import", Run.status == "queued")).values(status="completed", started_at=now, ended_at=now)
        )
    add_event(engine, run_id=run_id, kind="completed", message="checkpoint imported")
