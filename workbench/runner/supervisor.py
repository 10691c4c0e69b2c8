"""Supervisor: `python -m workbench.runner.supervisor RUN_ID ATTEMPT`, started detached (own session and process
group) by runner.scheduler once the run is `starting`.

It outlives the UI or CLI that launched it. It takes its run (compare-and-set: `starting`, on ATTEMPT, not taken by
another supervisor process; a stale or duplicate supervisor leaves without touching anything), starts the worker
(or torchrun), beats the heartbeat, enforces cancel (SIGTERM to the worker, SIGKILL after a grace period), records
the exit code or signal, marks a run the worker could not finish as failed, and then runs a housekeeping pass, which
starts the next queued run if a slot is free. While its worker runs it does a housekeeping pass every
`housekeeping_s` seconds too (runner/scheduler.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psutil
from sqlalchemy import Engine

from workbench.runner import lifeline, scheduler
from workbench.runner.journal import EXIT_UNSTORED, JournalCorrupt, replay, retry_store
from workbench.settings import get_settings
from workbench.store import get_engine, runs
from workbench.store.models import ACTIVE, RunRead, RunStatus, RunUpdate

POLL_S = 0.25  # how often the supervisor looks at the worker


RDZV_ENDPOINT_ENV = "WORKBENCH_RDZV_ENDPOINT"  # host:port of the rendezvous the ray executor chose for a multi-node run
NODE_IP_ENV = "WORKBENCH_NODE_IP"  # this node's address as the cluster sees it (the ray executor sets it)


def torchrun_command(run_id: str, nproc_per_node: int, *, nnodes: int = 1, endpoint: str = "",
                     node_rank: int | None = None, node_ip: str | None = None) -> list[str]:
    """torchrun and its ranks. One node: `--standalone`. Several: every node's torchrun meets at the c10d rendezvous
    at `endpoint`, whose id is the run id. c10d hands out the global ranks itself (sorted by node address and pid),
    so global rank 0, the one that records the run, may be on any node: all of them need the store and the run folder.
    With `node_rank` (the ray executor, which knows which node hosts the rendezvous) `is_host` is said outright, since
    on one machine every node would match the endpoint's host name, and `--node_rank` names the node in torchrun's
    log; without it (a machine joining ctr_stream's `rdzv_endpoint` by hand) torch decides by the host name."""
    if nnodes == 1:
        launch = ["--standalone", f"--nproc_per_node={nproc_per_node}"]
    else:
        if not endpoint:
            raise ValueError(
                f"a run on {nnodes} nodes needs a rendezvous endpoint: the ray executor chooses one "
                f"({RDZV_ENDPOINT_ENV}); without it, the config's rdzv_endpoint (ctr_stream)"
            )
        launch = _rendezvous_args(run_id, nproc_per_node, nnodes, endpoint)
        if node_rank is not None:
            launch += [f"--node_rank={node_rank}", f"--rdzv_conf=is_host={1 if node_rank == 0 else 0}",
                       *([f"--local_addr={node_ip}"] if node_ip else [])]  # fmt: skip
    return lifeline.wrap([
        sys.executable, "-m", "torch.distributed.run", *launch,
        *lifeline.wrap_module_args(["workbench.runner.worker", run_id]),
    ])  # fmt: skip


def worker_command(run_id: str, nproc_per_node: int, nnodes: int = 1, rdzv_endpoint: str = "") -> list[str]:
    """The worker, or torchrun and its ranks; each dies with its parent when the executor asks (runner/lifeline.py).

    With nnodes > 1 under the ray executor (which sets RDZV_ENDPOINT_ENV) this is node_rank 0's torchrun, hosting the
    rendezvous; the executor starts the other nodes' (ray_actors.NodeActor). Otherwise this machine's torchrun joins
    the config's `rdzv_endpoint` (ctr_stream), and every other machine joins the same rendezvous by hand with
    `multinode_join_command`."""
    chosen = os.environ.get(RDZV_ENDPOINT_ENV)
    if nnodes > 1 and chosen:
        return torchrun_command(run_id, nproc_per_node, nnodes=nnodes, endpoint=chosen, node_rank=0, node_ip=os.environ.get(NODE_IP_ENV))
    if nnodes > 1 or nproc_per_node > 1:
        return torchrun_command(run_id, nproc_per_node, nnodes=nnodes, endpoint=rdzv_endpoint)
    return lifeline.wrap([sys.executable, "-m", "workbench.runner.worker", run_id])


def _rendezvous_args(run_id: str, nproc_per_node: int, nnodes: int, rdzv_endpoint: str) -> list[str]:
    return [f"--nnodes={nnodes}", f"--nproc_per_node={nproc_per_node}", "--rdzv_backend=c10d",
            f"--rdzv_endpoint={rdzv_endpoint}", f"--rdzv_id={run_id}"]


def multinode_join_command(run_id: str, nproc_per_node: int, nnodes: int, rdzv_endpoint: str) -> list[str]:
    """What each other machine of a multi-node run runs (the same rendezvous as worker_command's)."""
    return ["torchrun", *_rendezvous_args(run_id, nproc_per_node, nnodes, rdzv_endpoint), "-m",
            "workbench.runner.worker", run_id]


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


def _start_worker(run_id: str, nproc_per_node: int, log: IO[bytes], nnodes: int = 1,
                  rdzv_endpoint: str = "") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        worker_command(run_id, nproc_per_node, nnodes, rdzv_endpoint), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def _housekeeping(engine: Engine, *, wait: bool) -> None:
    """A housekeeping pass that cannot take this run down with it: a failure is logged (supervisor.log) and the
    next pass tries again."""
    if not get_settings().supervisor_housekeeping:  # the ray executor's actor above us does the passes
        return
    try:
        scheduler.housekeeping(engine, wait=wait)
    except Exception as exc:
        print(f"[workbench] housekeeping failed, next pass in {get_settings().housekeeping_s:g} s: {exc!r}", flush=True)


def supervise(run_id: str, attempt: int) -> int:
    cancel = {"requested": False}

    def on_term(_signum: int, _frame: object) -> None:
        cancel["requested"] = True

    # Before the run is taken: taking it records our start time, and launch.cancel signals only a supervisor whose
    # start time is recorded, so no SIGTERM ever meets the default action (which would end us without a trace).
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    settings = get_settings()
    engine = get_engine(settings.database_url)
    me = psutil.Process()
    if not runs.claim_for_supervisor(engine, run_id=run_id, attempt=attempt, pid=me.pid, process_start=me.create_time()):
        try:
            now = runs.get_run(engine, run_id=run_id)
            state = f"{now.status}, attempt {now.attempt}, supervisor pid {now.supervisor_pid}"
        except runs.RunNotFound:
            state = "not in the store"
        print(f"[workbench] run {run_id} ({state}) is not this supervisor's (pid {me.pid}, attempt {attempt}): leaving it alone", flush=True)
        return 0
    run = runs.get_run(engine, run_id=run_id)
    if run.cancel_requested:  # cancelled before we took it: the canceller set the flag and sent no signal
        runs.transition(
            engine, run_id=run.id, to=RunStatus.CANCELLED, expect=[RunStatus.STARTING], on_attempt=attempt,
            message="cancelled before it started",
        )  # fmt: skip
        _housekeeping(engine, wait=True)
        return 0
    log_path = settings.runs_dir / run_id / "train.log"
    nproc_per_node = int(run.config.get("nproc_per_node", 1))
    nnodes, rdzv_endpoint = int(run.config.get("nnodes", 1)), str(run.config.get("rdzv_endpoint", ""))  # ctr_stream
    with open(log_path, "ab", buffering=0) as log:
        worker = _start_worker(run_id, nproc_per_node, log, nnodes, rdzv_endpoint)
        term_sent_at: float | None = None
        last_beat = last_housekeeping = time.monotonic()
        store_down = False
        while worker.poll() is None:
            now = time.monotonic()
            if now - last_beat >= settings.heartbeat_s:
                last_beat = now
                # The store may be away for a while (a PostgreSQL restart): the worker trains on and journals its
                # records, so we must neither die nor touch the worker; we beat again once the store is back.
                try:
                    runs.update_run(engine, run_id=run.id, on_attempt=attempt, run_in=RunUpdate(heartbeat_at=time.time()))
                    if not cancel["requested"] and runs.get_run(engine, run_id=run.id).cancel_requested:
                        cancel["requested"] = True
                    store_down = False
                except Exception as exc:
                    if not store_down:
                        first_line = (str(exc).strip().splitlines() or [""])[0]
                        print(f"[supervisor] the store cannot be reached ({type(exc).__name__}: {first_line}); retrying", file=sys.stderr)
                    store_down = True
            if cancel["requested"] and term_sent_at is None:
                try:
                    runs.update_run(engine, run_id=run.id, on_attempt=attempt, run_in=RunUpdate(cancel_requested=True))
                except Exception:
                    pass  # the worker gets the signal; the flag only tells readers why it stops
                worker.send_signal(signal.SIGTERM)  # torchrun forwards it to its workers
                term_sent_at = now
            elif term_sent_at is not None and now - term_sent_at > settings.cancel_grace_s:
                _kill_tree(worker.pid, signal.SIGKILL)
            if now - last_housekeeping >= settings.housekeeping_s:
                _housekeeping(engine, wait=False)  # another process holding the lock is doing the same work
                last_housekeeping = now
            time.sleep(POLL_S)
    code = worker.returncode
    exit_code, exit_signal = (None, -code) if code < 0 else (code, None)
    # the worker's end may fall in a store outage: retry (it waited settings.store_end_wait_s for the store too)
    try:
        retry_store(
            lambda: _record_end(engine, run, exit_code, exit_signal, cancel["requested"], log_path),
            wait_s=settings.store_end_wait_s, what="record how the worker ended",
        )  # fmt: skip
    except Exception as exc:
        print(
            f"[supervisor] giving up on the store ({type(exc).__name__}): the run stays as the store last had it until "
            f"housekeeping finds it lost; `workbench sync {run.id}` stores what its journal holds",
            file=sys.stderr,
        )
        return 1
    # our slot is free: wait for the lock, since a pass running now may have counted this run as active
    _housekeeping(engine, wait=True)
    return 0


def _record_end(engine: Engine, run: RunRead, exit_code: int | None, exit_signal: int | None, cancelled: bool, log_path: Path) -> None:
    """Store the worker's exit; a run it left active failed (or was cancelled): store what its journal holds beyond
    the store (a worker killed mid-sync, or one the store outlasted), say how it ended, keep the end of its log."""
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
    lifeline.die_with_parent()  # under the ray executor: die with the Ray actor that started us
    sys.exit(supervise(sys.argv[1], int(sys.argv[2])))
