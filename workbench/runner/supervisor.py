"""Supervisor: `python -m workbench.runner.supervisor RUN_ID NPROC TASK`, started detached (own session and
process group) by runner.spawn.

It outlives the UI or CLI that launched it. It starts the worker (or torchrun), beats the heartbeat, enforces
cancel (SIGTERM to the worker, SIGKILL after a grace period), records the exit code or signal, marks a run the
worker could not finish as failed, and then starts the next queued run if a slot is free.

A single-process worker is started at once, gated: it imports torch and the task's code, then waits on a pipe.
The supervisor opens the gate only when the run is claimed for it (`starting`, `supervisor_pid` = this process);
the launcher may start us before it has even inserted the run (see spawn.py). No claim in CLAIM_TIMEOUT_S: we
leave, and the worker with us, without touching the run.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import psutil

POLL_S = 0.25  # how often the supervisor looks at the worker and the run row (cancel flag)
CLAIM_POLL_S = 0.02
CLAIM_TIMEOUT_S = float(os.environ.get("WORKBENCH_CLAIM_TIMEOUT_S", "60"))  # an unclaimed supervisor leaves after this


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


def _start_worker(run_id: str, nproc_per_node: int, log: IO[bytes], task: str | None = None) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the worker (or torchrun). With `task`, gated: it preloads the task and waits for `_open_gate`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    gate_r = gate_w = None
    if task is not None:
        gate_r, gate_w = os.pipe()
        env.update(WORKBENCH_GATE_FD=str(gate_r), WORKBENCH_PRELOAD_TASK=task)
    worker = subprocess.Popen(
        worker_command(run_id, nproc_per_node), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, pass_fds=() if gate_r is None else (gate_r,),
    )  # fmt: skip
    if gate_r is not None:
        os.close(gate_r)
    return worker, gate_w


def _open_gate(gate: int) -> None:
    try:
        os.write(gate, b"go\n")
    except BrokenPipeError:
        pass  # the worker is already gone: the loop below records how it ended
    finally:
        os.close(gate)


def wait_for_claim(engine: Any, run_id: str, deadline: float | None = None) -> Any:
    """The run once it is `starting` with this process as its supervisor; None if it is not by `deadline`
    (time.monotonic(); default CLAIM_TIMEOUT_S from now). A cancel can only reach us after the claim:
    launch.cancel finds the supervisor by the claimed pid."""
    from workbench.store import runs
    from workbench.store.models import RunStatus

    deadline = deadline if deadline is not None else time.monotonic() + CLAIM_TIMEOUT_S
    while True:
        try:
            run = runs.get_run(engine, run_id=run_id)
        except runs.RunNotFound:
            run = None  # the launcher has not inserted it yet
        if run is not None and run.supervisor_pid == os.getpid():
            return run if run.status == RunStatus.STARTING else None
        if time.monotonic() >= deadline:
            return None
        time.sleep(CLAIM_POLL_S)


def supervise(run_id: str, nproc_per_node: int, task: str | None = None) -> int:
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
        worker, gate = _start_worker(run_id, 1, log, task) if nproc_per_node == 1 and task else (None, None)
        deadline = time.monotonic() + CLAIM_TIMEOUT_S
        select.select([sys.stdin], [], [], CLAIM_TIMEOUT_S)  # until the launcher has claimed the run (spawn.release)
        from workbench.runner import launch
        from workbench.settings import get_settings
        from workbench.store import get_engine, runs
        from workbench.store.models import ACTIVE, RunStatus, RunUpdate

        settings = get_settings()
        engine = get_engine(settings.database_url)
        run = wait_for_claim(engine, run_id, deadline)
        if run is None:
            if worker is not None:
                worker.kill()
                worker.wait()
            return 0
        me = psutil.Process()
        claim = RunUpdate(supervisor_pid=me.pid, supervisor_start=me.create_time(), heartbeat_at=time.time(), started_at=time.time())
        runs.update_run(engine, run_id=run.id, run_in=claim)
        if runs.get_run(engine, run_id=run.id).cancel_requested:  # cancelled between the claim and now: never start it
            if worker is not None:
                worker.kill()
                worker.wait()
            runs.transition(
                engine, run_id=run.id, to=RunStatus.CANCELLED, expect=[RunStatus.STARTING], on_attempt=run.attempt,
                message="cancelled before it started",
            )  # fmt: skip
            launch.schedule(engine)
            return 0
        if gate is not None:
            _open_gate(gate)
        else:
            worker, _ = _start_worker(run_id, nproc_per_node, log)
        assert worker is not None
        term_sent_at: float | None = None
        last_beat = 0.0
        store_down = False
        while worker.poll() is None:
            now = time.time()
            if now - last_beat >= settings.heartbeat_s:
                last_beat = now
                # The store may be away for a while (a PostgreSQL restart): the worker trains on and journals its
                # records, so we must neither die nor touch the worker; we beat again once the store is back.
                try:
                    runs.update_run(engine, run_id=run.id, on_attempt=run.attempt, run_in=RunUpdate(heartbeat_at=now))
                    if not cancel["requested"] and runs.get_run(engine, run_id=run.id).cancel_requested:
                        cancel["requested"] = True
                    store_down = False
                except Exception as exc:
                    if not store_down:
                        first_line = (str(exc).strip().splitlines() or [""])[0]
                        print(f"[supervisor] the store cannot be reached ({type(exc).__name__}: {first_line}); retrying", file=sys.stderr)
                    store_down = True
            if cancel["requested"] and term_sent_at is None:
                worker.send_signal(signal.SIGTERM)  # torchrun forwards it to its workers
                term_sent_at = now
                try:
                    runs.update_run(engine, run_id=run.id, run_in=RunUpdate(cancel_requested=True))
                except Exception:
                    pass  # the worker got the signal; the flag only tells readers why it stops
            elif term_sent_at is not None and now - term_sent_at > settings.cancel_grace_s:
                _kill_tree(worker.pid, signal.SIGKILL)
            time.sleep(POLL_S)
    code = worker.returncode
    exit_code, exit_signal = (None, -code) if code < 0 else (code, None)
    from workbench.runner.journal import retry_store

    # the worker's end may fall in a store outage: retry (it waited settings.store_end_wait_s for the store too)
    try:
        retry_store(
            lambda: _record_end(engine, run, exit_code, exit_signal, cancel["requested"], log_path),
            wait_s=settings.store_end_wait_s, what="record how the worker ended",
        )  # fmt: skip
        retry_store(lambda: launch.schedule(engine), wait_s=settings.store_end_wait_s, what="start queued runs")
    except Exception as exc:
        print(
            f"[supervisor] giving up on the store ({type(exc).__name__}): the run stays as the store last had it until "
            f"the reconciler finds it lost; `workbench sync {run.id}` stores what its journal holds",
            file=sys.stderr,
        )
        return 1
    return 0


def _record_end(engine: Any, run: Any, exit_code: int | None, exit_signal: int | None, cancelled: bool, log_path: Path) -> None:
    """Store the worker's exit; a run it left active failed (or was cancelled): store what its journal holds beyond
    the store (a worker killed mid-sync, or one the store outlasted), say how it ended, keep the end of its log."""
    from workbench.runner.journal import EXIT_UNSTORED, JournalCorrupt, replay
    from workbench.settings import get_settings
    from workbench.store import runs
    from workbench.store.models import ACTIVE, RunStatus, RunUpdate

    # everything below is guarded by the attempt: the run may already have been resumed by someone else
    ended = RunUpdate(exit_code=exit_code, exit_signal=exit_signal, heartbeat_at=time.time())
    runs.update_run(engine, run_id=run.id, on_attempt=run.attempt, run_in=ended)
    now_run = runs.get_run(engine, run_id=run.id)
    if now_run.attempt == run.attempt and now_run.status in ACTIVE:
        try:
            stored = f"{replay(engine, run.id, log_path.parent)[0]} records left in its journal were stored afterwards"
        except JournalCorrupt as exc:
            stored = f"its journal could not be replayed: {exc}"
        if exit_signal is not None:
            how = f"worker killed by signal {signal.Signals(exit_signal).name} ({exit_signal}); {stored}"
        elif exit_code == EXIT_UNSTORED:
            how = (
                f"the run could not record its end: the store was unreachable for more than "
                f"{get_settings().store_end_wait_s:.0f} s after it; {stored}"
            )
        else:
            how = f"worker exited with code {exit_code} without reporting; {stored}"
        target = RunStatus.CANCELLED if cancelled and exit_code != EXIT_UNSTORED else RunStatus.FAILED
        runs.transition(
            engine, run_id=run.id, to=target, expect=ACTIVE, on_attempt=run.attempt,
            run_in=RunUpdate(error=how, traceback=_log_tail(log_path)), message=how[:500],
        )  # fmt: skip


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))
