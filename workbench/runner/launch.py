"""Launch, queue, cancel, resume and reconcile runs. All process handling of the UI/CLI side lives here."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil
from pydantic import BaseModel
from sqlalchemy import Engine

from workbench.config.io import config_to_dict, config_to_yaml
from workbench.runner import spawn
from workbench.settings import get_settings
from workbench.store import runs
from workbench.store.events import add_event
from workbench.store.models import ACTIVE, EventCreate, RunCreate, RunRead, RunStatus, RunUpdate
from workbench.tasks import TASKS

STARTING_TIMEOUT_S = 120.0  # a run claimed for start whose supervisor never reported is lost after this


@contextmanager
def _scheduler_lock() -> Iterator[None]:
    """One scheduler at a time across processes (UI, CLI, supervisors), so slots are never over-filled."""
    path = get_settings().home_dir / "scheduler.lock"
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_dir(run_id: str) -> Path:
    return get_settings().runs_dir / run_id


def create(
    engine: Engine,
    cfg: BaseModel,
    *,
    name: str | None = None,
    owner: str | None = None,
    tags: list[str] | None = None,
    notes: str = "",
    parent_run_id: str | None = None,
    parent_checkpoint_id: int | None = None,
    kind: str = "train",
    eval_data: str | None = None,
    run_id: str | None = None,
    supervisor: subprocess.Popen[bytes] | None = None,
) -> RunRead:
    """Insert the run as `queued`, write its config.yaml, and let the scheduler start it when a slot is free.

    `supervisor`: one already started for `run_id` (spawn.start_supervisor): it is used if the run can start now,
    and stopped if the run has to wait in the queue.
    """
    early = {run_id: supervisor} if supervisor is not None and run_id is not None else {}
    inserted = False
    try:
        task = cfg.task  # type: ignore[attr-defined]
        spec = TASKS[task]
        monitor_key, monitor_mode = spec.monitor(cfg)
        run_in = RunCreate(
            id=run_id,
            task=task,
            name=name or f"{task}",
            config=config_to_dict(cfg),
            monitor_key=monitor_key,
            monitor_mode=monitor_mode,
            owner=owner,
            tags=tags or [],
            notes=notes,
            parent_run_id=parent_run_id,
            parent_checkpoint_id=parent_checkpoint_id,
            kind=kind,
            eval_data=eval_data,
        )
        run = runs.create_run(engine, run_in=run_in)
        inserted = True
        folder = run_dir(run.id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(config_to_yaml(cfg))
        schedule(engine, early)
    finally:
        for rid, proc in early.items():  # not used: the run queued, another scheduler started it first, or we failed
            if inserted:
                spawn.stop_supervisor(proc)
            else:
                spawn.discard(proc, rid)  # and its folder: there is no run to own it
    return runs.get_run(engine, run_id=run.id)


def schedule(engine: Engine, early: dict[str, subprocess.Popen[bytes]] | None = None) -> list[str]:
    """Start queued runs, oldest first, while fewer than `max_concurrent_runs` are active. Returns started ids.

    Starting a run claims it for one supervisor process: `starting` plus that process's pid and start time. The
    supervisor waits for exactly that claim before it runs anything. `early`: supervisors already started for some
    runs (a launch's); the one used is popped from the dict.
    """
    started: list[str] = []
    early = early if early is not None else {}
    with _scheduler_lock():
        active = len(runs.active_runs(engine))
        for run in runs.queued_runs(engine):
            if active >= get_settings().max_concurrent_runs:
                break
            if runs.transition(engine, run_id=run.id, to=RunStatus.STARTING, expect=[RunStatus.QUEUED], message="slot free: starting"):
                proc = early.pop(run.id, None) or spawn.start_supervisor(run.id, run.task, int(run.config["nproc_per_node"]))
                # the claim; the supervisor adds its start time once it has taken it (and can take a SIGTERM)
                runs.update_run(engine, run_id=run.id, run_in=RunUpdate(supervisor_pid=proc.pid, heartbeat_at=time.time()))
                spawn.release(proc)
                started.append(run.id)
                active += 1
    return started


def _process_alive(pid: int | None, create_time: float | None) -> bool:
    """The process exists, is not a zombie, and is the same process (start time matches: pids get reused)."""
    if pid is None:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(p.create_time() - create_time) < 1.0
    except psutil.NoSuchProcess:
        return False


def reconcile(engine: Engine) -> list[str]:
    """Mark runs whose supervisor vanished without reporting as `lost`; then fill freed slots."""
    settings = get_settings()
    now = time.time()
    lost: list[str] = []
    for run in runs.active_runs(engine):
        reason = None
        if run.supervisor_pid is not None and not _process_alive(run.supervisor_pid, run.supervisor_start):
            reason = f"supervisor process {run.supervisor_pid} is gone"
        elif run.supervisor_pid is not None and run.heartbeat_at and now - run.heartbeat_at > settings.lost_after_s:
            reason = f"no heartbeat for {now - run.heartbeat_at:.0f} s"
        elif run.supervisor_pid is None and run.heartbeat_at and now - run.heartbeat_at > STARTING_TIMEOUT_S:
            reason = "the supervisor never started"
        if reason is None:
            continue
        # the supervisor may have finished the run between our read and now: compare-and-set on the status
        if runs.transition(engine, run_id=run.id, to=RunStatus.LOST, expect=ACTIVE, run_in=RunUpdate(error=f"lost: {reason}"), message=reason):
            lost.append(run.id)
    if lost:
        schedule(engine)
    return lost


def cancel(engine: Engine, run_id: str) -> str:
    """Cancel a run: a queued run at once; an active one cooperatively (checkpoint, then `cancelled`)."""
    run = runs.get_run(engine, run_id=run_id)
    if run.status == RunStatus.QUEUED:
        runs.transition(engine, run_id=run.id, to=RunStatus.CANCELLED, expect=[RunStatus.QUEUED], message="cancelled before it started")
        return "cancelled"
    if run.status not in ACTIVE:
        return run.status
    runs.update_run(engine, run_id=run.id, run_in=RunUpdate(cancel_requested=True))
    add_event(engine, run_id=run.id, event_in=EventCreate(kind="cancel requested", message="SIGTERM sent; the run saves a checkpoint and stops"))
    # A supervisor that has not yet taken its claim (no start time recorded) may not have its SIGTERM handler yet:
    # it reads the flag when it takes the claim instead.
    if run.supervisor_start is not None and _process_alive(run.supervisor_pid, run.supervisor_start):
        try:
            os.kill(run.supervisor_pid, signal.SIGTERM)  # type: ignore[arg-type]
        except ProcessLookupError:
            pass
    return "cancel requested"


def resume(engine: Engine, run_id: str) -> RunRead:
    """Continue a failed, cancelled or lost run from its latest checkpoint (attempt + 1, steps continue)."""
    run = runs.get_run(engine, run_id=run_id)
    if run.status not in runs.TRANSITIONS or RunStatus.QUEUED not in runs.TRANSITIONS[run.status]:
        raise ValueError(f"run {run.id} is {run.status}; only failed, cancelled or lost runs can be resumed")
    fresh_attempt = RunUpdate(
        attempt=run.attempt + 1,
        cancel_requested=False,
        error=None,
        traceback=None,
        exit_code=None,
        exit_signal=None,
        ended_at=None,
        supervisor_pid=None,
        supervisor_start=None,
        worker_pid=None,
        phase=None,
        progress_started_at=None,
    )
    runs.transition(engine, run_id=run.id, to=RunStatus.QUEUED, message=f"resumed (attempt {run.attempt + 1})", run_in=fresh_attempt)
    schedule(engine)
    return runs.get_run(engine, run_id=run.id)


def delete(engine: Engine, run_id: str) -> None:
    """Delete a run's files, then its rows (files first: rows without files are visible, files without rows leak)."""
    run = runs.get_run(engine, run_id=run_id)
    if run.status in ACTIVE:
        raise ValueError(f"run {run.id} is {run.status}; cancel it before deleting it")
    shutil.rmtree(run_dir(run.id), ignore_errors=True)
    runs.delete_run_rows(engine, run_id=run.id)
