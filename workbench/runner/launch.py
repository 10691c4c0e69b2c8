"""Launch, cancel, resume and delete runs: what the UI and CLI ask for. Starting runs and finding lost ones is
runner/scheduler.py's housekeeping, which a launch and a resume run once before they return.

A launch is plain: write the run's folder and config.yaml, insert the run `queued` (on this host), then one
housekeeping pass: under the scheduler lock, a queued run with a free slot goes `starting` and gets a detached
supervisor, and the supervisor starts the worker.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import Engine

from workbench.config.io import config_to_dict, config_to_yaml
from workbench.ids import new_run_id
from workbench.runner import scheduler
from workbench.runner.executor import get_executor
from workbench.settings import get_settings
from workbench.store import runs
from workbench.store.events import add_event
from workbench.store.models import ACTIVE, EventCreate, RunCreate, RunRead, RunStatus, RunUpdate
from workbench.tasks import TASKS


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
    study_id: str | None = None,
    trial_number: int | None = None,
) -> RunRead:
    """Insert the run as `queued` with its config.yaml, and start it now if a slot is free (else it waits)."""
    task = cfg.task  # type: ignore[attr-defined]
    spec = TASKS[task]
    get_executor().check_launch(config_to_dict(cfg))  # before anything is written: a run it cannot place is refused
    run_id = new_run_id()
    folder = run_dir(run_id)
    folder.mkdir(parents=True)
    try:
        (folder / "config.yaml").write_text(config_to_yaml(cfg))
        monitor_key, monitor_mode = spec.monitor(cfg)
        run_in = RunCreate(
            id=run_id, task=task, name=name or f"{task}", config=config_to_dict(cfg), monitor_key=monitor_key,
            monitor_mode=monitor_mode, owner=owner, tags=tags or [], notes=notes, parent_run_id=parent_run_id,
            parent_checkpoint_id=parent_checkpoint_id, kind=kind, eval_data=eval_data, host=get_settings().host,
            study_id=study_id, trial_number=trial_number,
        )  # fmt: skip
        runs.create_run(engine, run_in=run_in)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no run owns this folder
        raise
    scheduler.housekeeping(engine)
    return runs.get_run(engine, run_id=run_id)


def cancel(engine: Engine, run_id: str) -> str:
    """Cancel a run: a queued run at once; an active one cooperatively (checkpoint, then `cancelled`)."""
    run = runs.get_run(engine, run_id=run_id)
    if run.status == RunStatus.QUEUED:
        cancelled = runs.transition(
            engine, run_id=run.id, to=RunStatus.CANCELLED, expect=[RunStatus.QUEUED], on_attempt=run.attempt,
            message="cancelled before it started",
        )  # fmt: skip
        if cancelled:
            get_executor().withdraw(run)  # ray: take it out of Ray's queue
            return "cancelled"
        run = runs.get_run(engine, run_id=run.id)  # a scheduler started it meanwhile
    if run.status not in ACTIVE:
        return str(run.status)
    # The flag first: the supervisor reads it once its SIGTERM handler is installed and at every heartbeat, so
    # the cancel holds even where no signal can be sent (another host, a supervisor still starting up).
    runs.update_run(engine, run_id=run.id, on_attempt=run.attempt, run_in=RunUpdate(cancel_requested=True))
    run = runs.get_run(engine, run_id=run.id)  # read after the flag: see signal_supervisor
    how = get_executor().signal_cancel(run) or (
        f"the supervisor on {run.host} sees it within {get_settings().heartbeat_s:g} s; the run saves a checkpoint and stops"
    )
    add_event(engine, run_id=run.id, event_in=EventCreate(kind="cancel requested", message=how))
    return "cancel requested"


def signal_supervisor(run: RunRead) -> bool:
    """SIGTERM the run's supervisor if it runs here and has taken its run. Taking the run records the supervisor's
    start time after its SIGTERM handler is installed, so a supervisor without one yet is never signalled (the
    default action would kill it); it reads the cancel flag, set before this read, right after taking the run."""
    settings = get_settings()
    if run.host != settings.host or run.supervisor_start is None:
        return False
    if not scheduler.process_alive(run.supervisor_pid, run.supervisor_start):
        return False
    try:
        os.kill(run.supervisor_pid, signal.SIGTERM)  # type: ignore[arg-type]
    except ProcessLookupError:
        return False
    return True


def resume(engine: Engine, run_id: str) -> RunRead:
    """Continue a failed, cancelled or lost run from its latest checkpoint (attempt + 1, steps continue)."""
    run = runs.get_run(engine, run_id=run_id)
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST):
        raise ValueError(f"run {run.id} is {run.status}; only failed, cancelled or lost runs can be resumed")
    get_executor().check_launch(run.config)
    fresh = RunUpdate(
        attempt=run.attempt + 1, cancel_requested=False, error=None, traceback=None, exit_code=None, exit_signal=None,
        ended_at=None, supervisor_pid=None, supervisor_start=None, worker_pid=None, phase=None, progress_started_at=None,
        host=get_settings().host,  # it runs again where it was resumed (see scheduler.py on hosts)
    )  # fmt: skip
    runs.transition(
        engine, run_id=run.id, to=RunStatus.QUEUED, expect=[run.status], message=f"resumed (attempt {run.attempt + 1})", run_in=fresh
    )
    scheduler.housekeeping(engine)
    return runs.get_run(engine, run_id=run.id)


def delete(engine: Engine, run_id: str) -> None:
    """Delete a run's files, then its rows (files first: rows without files are visible, files without rows leak)."""
    run = runs.get_run(engine, run_id=run_id)
    if run.status in ACTIVE:
        raise ValueError(f"run {run.id} is {run.status}; cancel it before deleting it")
    shutil.rmtree(run_dir(run.id), ignore_errors=True)
    runs.delete_run_rows(engine, run_id=run.id)
