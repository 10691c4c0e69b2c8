"""Housekeeping: the only code that starts supervisors or marks runs `lost`.

One pass takes the scheduler lock (store/locks.py: a PostgreSQL advisory lock, or a file lock beside a SQLite
database), marks runs whose supervisor vanished `lost`, then starts queued runs through the executor
(runner/executor.py). The local executor starts this host's queued runs, oldest first, while fewer than
`max_concurrent_runs` of this host's runs are active (below); the ray executor hands every queued run to Ray at
once, where it waits for a node with its resources (runner/ray_executor.py). A pass runs
  (a) at launch and resume,
  (b) when a supervisor has ended its run (its slot is free),
  (c) every `housekeeping_s` seconds in every live supervisor, and on a daemon thread in the UI server and in
      `workbench run --wait` (PeriodicHousekeeping), so a queued run starts even when no supervisor is left.
Reads (api.list_runs, api.get_run) never start processes or change runs.

Hosts (several machines on one PostgreSQL store). A run records the host that launched or resumed it, and it runs
there: the scheduler on host H starts only H's queued runs, and H's slots count only H's active runs
(`max_concurrent_runs` is per machine, as the cores are). Letting any host take any queued run would start runs on
machines that lack their data files, and a run started from a laptop could land on a server nobody chose. A run
without a host (recorded before runs had one) goes to the first host that schedules it.
Liveness: on the run's own host the supervisor's pid and create time decide at once; every host also judges every
run by its heartbeat (older than `lost_after_s`: lost), which is all another host can see.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil
from sqlalchemy import Engine

from workbench.settings import Settings, get_settings
from workbench.store import get_engine, runs
from workbench.store.locks import scheduler_lock
from workbench.store.models import ACTIVE, RunRead, RunStatus, RunUpdate

if TYPE_CHECKING:
    from workbench.runner.executor import Executor

log = logging.getLogger("workbench.housekeeping")


@dataclass
class Housekeeping:
    lost: list[str]  # runs marked lost by this pass
    started: list[str]  # runs this pass started a supervisor for


def housekeeping(engine: Engine, *, wait: bool = True) -> Housekeeping | None:
    """One pass: reconcile, then schedule. With `wait=False` (the periodic passes) it returns None at once when
    another process holds the lock: that process is doing this very work now."""
    from workbench.runner.executor import get_executor

    settings = get_settings()
    executor = get_executor(settings)
    with scheduler_lock(engine, wait=wait) as held:
        if not held:
            return None
        lost = _reconcile(engine, settings, executor)
        started = executor.start_queued(engine, settings)
    return Housekeeping(lost=lost, started=started)


def process_alive(pid: int | None, create_time: float | None) -> bool:
    """The process exists on this machine, is not a zombie, and is the same process (pids get reused: its create
    time must match when we know it)."""
    if pid is None:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(p.create_time() - create_time) < 1.0
    except psutil.NoSuchProcess:
        return False


def why_lost(run: RunRead, settings: Settings, now: float) -> str | None:
    """Why an active run is lost, or None while it may be alive."""
    local = run.host == settings.host
    if local and run.supervisor_pid is not None and not process_alive(run.supervisor_pid, run.supervisor_start):
        return f"supervisor process {run.supervisor_pid} is gone"
    last_sign = run.heartbeat_at or run.started_at or run.created_at
    if now - last_sign > settings.lost_after_s:
        return f"no heartbeat for {now - last_sign:.0f} s" + ("" if local else f" from host {run.host or '(unknown)'}")
    return None


def _reconcile(engine: Engine, settings: Settings, executor: Executor) -> list[str]:
    now = time.time()
    lost: list[str] = executor.reconcile(engine, settings)
    for run in runs.active_runs(engine):
        reason = executor.why_lost(run, settings, now)
        # the supervisor may have ended the run since we read it: compare-and-set on status and attempt
        if reason is not None and runs.transition(
            engine, run_id=run.id, to=RunStatus.LOST, expect=ACTIVE, on_attempt=run.attempt,
            run_in=RunUpdate(error=f"lost: {reason}"), message=reason,
        ):  # fmt: skip
            lost.append(run.id)
    return lost


def schedule_here(engine: Engine, settings: Settings) -> list[str]:
    """The local executor's scheduling: this host's queued runs get a detached supervisor while slots are free."""
    def on_this_host(run: RunRead) -> bool:
        return run.host in (None, settings.host)

    active = sum(1 for r in runs.active_runs(engine) if on_this_host(r))
    started: list[str] = []
    for run in runs.queued_runs(engine):
        if active >= settings.max_concurrent_runs:
            break
        if not on_this_host(run) or run.kind == "import":  # an import is queued only until its file is stored
            continue
        # heartbeat_at now: the reconciler gives the supervisor lost_after_s to start and beat on its own
        if not runs.transition(
            engine, run_id=run.id, to=RunStatus.STARTING, expect=[RunStatus.QUEUED], on_attempt=run.attempt,
            message=f"slot free: starting on {settings.host}", run_in=RunUpdate(host=settings.host, heartbeat_at=time.time()),
        ):  # fmt: skip
            continue
        active += 1
        try:
            pid = start_supervisor(run.id, run.attempt, settings)
        except OSError as exc:
            how = f"could not start the supervisor: {exc}"
            runs.transition(
                engine, run_id=run.id, to=RunStatus.FAILED, expect=[RunStatus.STARTING], on_attempt=run.attempt,
                run_in=RunUpdate(error=how), message=how,
            )  # fmt: skip
            active -= 1
            continue
        # the supervisor records its pid too when it takes the run; this makes it visible (and checkable) at once
        runs.update_run(engine, run_id=run.id, on_attempt=run.attempt, run_in=RunUpdate(supervisor_pid=pid))
        started.append(run.id)
    return started


def start_supervisor(run_id: str, attempt: int, settings: Settings) -> int:
    """`python -m workbench.runner.supervisor RUN_ID ATTEMPT`, detached (own session and process group) so it
    outlives the UI, CLI or supervisor that started it. Returns its pid."""
    folder = settings.runs_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "WORKBENCH_HOME": str(settings.home_dir),
        "WORKBENCH_HOST": settings.host,
        "PYTHONUNBUFFERED": "1",
    }
    if settings.db_url:
        env["WORKBENCH_DB_URL"] = settings.db_url
    with open(folder / "supervisor.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.runner.supervisor", run_id, str(attempt)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )  # fmt: skip
    # reap it when it ends, so a long-lived UI process or supervisor does not collect zombies
    threading.Thread(target=proc.wait, name=f"reap-supervisor-{run_id}", daemon=True).start()
    return proc.pid


class PeriodicHousekeeping:
    """A housekeeping pass every `interval` seconds on a daemon thread (the UI server, `workbench run --wait`)."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval if interval is not None else get_settings().housekeeping_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="workbench-housekeeping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            try:
                # settings are read on each pass: the process may point at another store later (tests do)
                housekeeping(get_engine(get_settings().database_url), wait=False)
            except Exception:  # the store may be away for a while; the next pass tries again
                log.exception("housekeeping pass failed; next try in %.0f s", self.interval)
            if self._stop.wait(self.interval):
                return


_background: PeriodicHousekeeping | None = None
_background_lock = threading.Lock()


def start_background_housekeeping() -> PeriodicHousekeeping:
    """The process's periodic housekeeping, started on the first call; later calls return the same one."""
    global _background
    with _background_lock:
        if _background is None:
            _background = PeriodicHousekeeping()
            _background.start()
        return _background


def stop_background_housekeeping() -> None:
    """Stop the process's periodic housekeeping, if any (tests: it must not outlive the store it was started on)."""
    global _background
    with _background_lock:
        if _background is not None:
            _background.stop()
            _background = None
