"""Supervisor: `python -m workbench.runner.supervisor RUN_ID`, started detached (own session and process group).

It outlives the UI or CLI that launched it. It starts the worker (or torchrun), beats the heartbeat, enforces
cancel (SIGTERM to the worker, SIGKILL after a grace period), records the exit code or signal, marks a run the
worker could not finish as failed, and then starts the next queued run if a slot is free.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

POLL_S = 0.25  # how often the supervisor looks at the worker and the run row (cancel flag)


def worker_command(run_id: str, nproc_per_node: int) -> list[str]:
    if nproc_per_node > 1:
        return [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            "-m", "workbench.runner.worker", run_id,
        ]  # fmt: skip
    return [sys.executable, "-m", "workbench.runner.worker", run_id]


def _kill_tree(pid: int, sig: int) -> None:
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def _log_tail(path: Path, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def supervise(run_id: str, nproc_per_node: int) -> int:
    cancel = {"requested": False}

    def on_term(_signum: int, _frame: object) -> None:
        cancel["requested"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    # Start the worker first, then import the store: the worker's own start-up (torch) overlaps ours.
    # The launcher passed WORKBENCH_HOME (absolute) and WORKBENCH_DB_URL in our environment.
    run_dir = Path(os.environ["WORKBENCH_HOME"]) / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"
    with open(log_path, "ab", buffering=0) as log:
        worker = subprocess.Popen(
            worker_command(run_id, nproc_per_node), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        from workbench.runner import launch
        from workbench.settings import get_settings
        from workbench.store import get_engine, runs

        settings = get_settings()
        engine = get_engine(settings.database_url)
        run = runs.get_run(engine, run_id)
        me = psutil.Process()
        runs.update_run(engine, run.id, supervisor_pid=me.pid, supervisor_start=me.create_time(), heartbeat_at=time.time(), started_at=time.time())
        term_sent_at: float | None = None
        last_beat = 0.0
        while worker.poll() is None:
            now = time.time()
            if now - last_beat >= settings.heartbeat_s:
                runs.update_run(engine, run.id, on_attempt=run.attempt, heartbeat_at=now)
                last_beat = now
                if not cancel["requested"] and runs.get_run(engine, run.id).cancel_requested:
                    cancel["requested"] = True
            if cancel["requested"] and term_sent_at is None:
                runs.update_run(engine, run.id, cancel_requested=True)
                worker.send_signal(signal.SIGTERM)  # torchrun forwards it to its workers
                term_sent_at = now
            elif term_sent_at is not None and now - term_sent_at > settings.cancel_grace_s:
                _kill_tree(worker.pid, signal.SIGKILL)
            time.sleep(POLL_S)
    code = worker.returncode
    exit_code, exit_signal = (None, -code) if code < 0 else (code, None)
    # everything below is guarded by the attempt: the run may already have been resumed by someone else
    runs.update_run(engine, run.id, on_attempt=run.attempt, exit_code=exit_code, exit_signal=exit_signal, heartbeat_at=time.time())
    now_run = runs.get_run(engine, run.id)
    if now_run.attempt == run.attempt and now_run.status in ("starting", "running"):
        # the worker died before it could report: say how, and keep the end of its log
        if exit_signal is not None:
            how = f"worker killed by signal {signal.Signals(exit_signal).name} ({exit_signal})"
        else:
            how = f"worker exited with code {exit_code} without reporting"
        target = "cancelled" if cancel["requested"] else "failed"
        runs.transition(
            engine, run.id, target, expect=("starting", "running"), on_attempt=run.attempt, error=how, traceback=_log_tail(log_path), message=how
        )
    launch.schedule(engine)
    return 0


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1], int(sys.argv[2])))
