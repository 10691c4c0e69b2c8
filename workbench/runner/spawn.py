"""Start and stop a run's supervisor process. Standard library only (plus settings), on purpose.

A launch starts the supervisor *before* it imports the store and inserts the run: the supervisor starts its worker
at once, and the worker imports torch and the task's training code while the launcher is still busy with SQLAlchemy.
Neither touches the run until the launcher has claimed it for this very process (the run is `starting` and its
`supervisor_pid` is this process; see supervisor.wait_for_claim). A launch whose run has to wait in the queue stops
its early supervisor again, and the scheduler starts a fresh one when a slot frees.

The launcher closes the supervisor's stdin once it has written the claim (`release`); the supervisor waits for that
before it imports the store itself, so that its import does not take a core from the worker's start-up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading

from workbench.settings import get_settings


def start_supervisor(run_id: str, task: str, nproc_per_node: int) -> subprocess.Popen[bytes]:
    """`python -m workbench.runner.supervisor RUN_ID NPROC TASK`, detached: own session and process group, so it
    survives the UI or CLI that started it."""
    settings = get_settings()
    folder = settings.runs_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WORKBENCH_HOME": str(settings.home_dir), "PYTHONUNBUFFERED": "1"}
    if settings.db_url:
        env["WORKBENCH_DB_URL"] = settings.db_url
    with open(folder / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.runner.supervisor", run_id, str(nproc_per_node), task],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,  # closed by release() once the run is claimed for it
            start_new_session=True,
            env=env,
            cwd=os.getcwd(),
        )
    # reap it when it ends so a long-lived UI process does not collect zombies
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc


def release(proc: subprocess.Popen[bytes]) -> None:
    """Tell the supervisor its claim is written: it may look at the store now."""
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass


def stop_supervisor(proc: subprocess.Popen[bytes]) -> None:
    """Kill an early supervisor that did not get its run, with its worker (its whole process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    release(proc)


def discard(proc: subprocess.Popen[bytes], run_id: str) -> None:
    """Stop an early supervisor whose run was never inserted, and remove the folder it started."""
    stop_supervisor(proc)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    shutil.rmtree(get_settings().runs_dir / run_id, ignore_errors=True)
