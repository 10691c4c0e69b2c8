"""What the ray executor runs on the nodes (runner/ray_executor.py hands runs to Ray as these actors).

RunActor: one run's attempt, placed by Ray where the run's `resources` fit; it moves the run to `starting`, runs the
ordinary supervisor as its child and does the housekeeping passes. NodeActor: node_rank k >= 1 of a run spanning
nodes, in bundle k of the run's placement group; it runs that node's torchrun and nothing else. Everything they
start dies with them (runner/lifeline.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray.util import remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from sqlalchemy import Engine

from workbench.runner import lifeline
from workbench.settings import get_settings
from workbench.store import runs
from workbench.store.events import add_event
from workbench.store.models import ACTIVE, EventCreate, RunStatus, RunUpdate

NAMESPACE = "workbench"
NODES_START_S = 120.0  # the other nodes' actors get this long to start once Ray has reserved their bundles


def actor_name(run_id: str, attempt: int) -> str:
    return f"wb-run-{run_id}-{attempt}"


@ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=2)  # run() and cancel() at once
class RunActor:
    """One run's attempt on a node Ray chose: moves the run to `starting`, then runs its supervisor as a child.

    The work is a call the actor makes on itself once it is created: a call from the submitter would be owned by the
    submitter and die with it (a `workbench run --detach` is gone long before Ray finds a node), while the creation
    of a detached actor is the cluster's.

    A run spanning nodes (`nnodes > 1`) comes with its placement group; this actor holds bundle 0 (node_rank 0) and
    starts a NodeActor in each other bundle, which runs that node's torchrun and nothing else. The supervisor here
    alone owns the run's status (DESIGN: one process per run does); the rendezvous is hosted by this node's torchrun.
    The NodeActors are this actor's (they die with it); when the supervisor ends, they are killed and the placement
    group is given back."""

    def __init__(self, run_id: str, attempt: int, env: dict[str, str], cwd: str, group: Any = None) -> None:
        self.supervisor: subprocess.Popen[bytes] | None = None
        self.group = group
        self.nodes: list[Any] = []  # NodeActor handles, node_rank 1..nnodes-1
        ray.get_runtime_context().current_actor.run.remote(run_id, attempt, env, cwd)

    def run(self, run_id: str, attempt: int, env: dict[str, str], cwd: str) -> int:
        try:
            return self._run(run_id, attempt, env, cwd)
        finally:
            for node in self.nodes:
                ray.kill(node, no_restart=True)  # their torchrun dies with them (lifeline)
            if self.group is not None:
                remove_placement_group(self.group)  # last: it ends this actor too
            ray.actor.exit_actor()  # give the CPUs/GPUs back to Ray (a detached actor lives on otherwise)

    def _run(self, run_id: str, attempt: int, env: dict[str, str], cwd: str) -> int:
        from workbench.runner.scheduler import PeriodicHousekeeping
        from workbench.runner.supervisor import NODE_IP_ENV, RDZV_ENDPOINT_ENV
        from workbench.settings import reset_settings
        from workbench.store import get_engine

        os.environ.update(env)
        os.environ.pop("WORKBENCH_HOST", None)
        reset_settings()
        settings = get_settings()
        engine = get_engine(settings.database_url)
        context = ray.get_runtime_context()
        node_id, ip, host = context.get_node_id(), ray.util.get_node_ip_address(), socket.gethostname()
        placed = f"placed by Ray on node {node_id[:12]} ({ip}, host {host})"
        child_env = {
            **os.environ,
            "WORKBENCH_HOST": host,
            "RAY_ADDRESS": context.gcs_address,  # the cluster as this node sees it
            lifeline.ENV: str(os.getpid()),
            # housekeeping needs Ray (actor liveness); this process has a connection, a supervisor would need its own
            # (~200 MB as a Ray driver): the passes run here instead
            "WORKBENCH_SUPERVISOR_HOUSEKEEPING": "false",
            "PYTHONUNBUFFERED": "1",
        }
        spread: _Spread | None = None
        if self.group is not None:
            spread = self._start_nodes(engine, run_id, attempt, env, cwd, ip)
            if spread is None:
                return 0
            child_env.update({RDZV_ENDPOINT_ENV: spread.endpoint, NODE_IP_ENV: ip})
            placed = f"placed by Ray on {len(self.nodes) + 1} nodes: node_rank 0 on node {node_id[:12]} ({ip}, host {host}); " + "; ".join(
                f"node_rank {k} on node {n_id[:12]} ({n_ip}, host {n_host})" for k, (n_id, n_ip, n_host) in enumerate(spread.where, start=1)
            )  # fmt: skip
        if not runs.transition(
            engine, run_id=run_id, to=RunStatus.STARTING, expect=[RunStatus.QUEUED], on_attempt=attempt, message=placed,
            run_in=RunUpdate(host=host, heartbeat_at=time.time(), phase=None),
        ):  # fmt: skip
            return 0  # cancelled, resumed or deleted while it waited in Ray
        folder = settings.runs_dir / run_id
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "supervisor.log", "ab") as out:
            self.supervisor = subprocess.Popen(
                [sys.executable, "-m", "workbench.runner.supervisor", run_id, str(attempt)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env,
                cwd=cwd if os.path.isdir(cwd) else str(settings.home_dir),
            )  # fmt: skip
        periodic = PeriodicHousekeeping()
        periodic.start()
        try:
            if spread is None:
                return self.supervisor.wait()
            return self._watch_nodes(engine, run_id, attempt, spread)
        finally:
            periodic.stop()

    def _start_nodes(self, engine: Engine, run_id: str, attempt: int, env: dict[str, str], cwd: str, ip: str) -> _Spread | None:
        """A NodeActor in every other bundle of the placement group, and where each landed. None (the run failed, or
        is no longer this attempt's to start) when they cannot be had."""
        run = runs.get_run(engine, run_id=run_id)
        nnodes, nproc = int(run.config.get("nnodes", 1)), int(run.config.get("nproc_per_node", 1))
        bundle = self.group.bundle_specs[0]  # every bundle is the same: one node's share of the run
        for k in range(1, nnodes):
            self.nodes.append(NodeActor.options(  # type: ignore[attr-defined]
                name=f"{actor_name(run_id, attempt)}-node{k}", namespace=NAMESPACE,
                num_cpus=bundle.get("CPU", 0), num_gpus=bundle.get("GPU", 0),
                resources={r: v for r, v in bundle.items() if r not in ("CPU", "GPU")},
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=k),
            ).remote(run_id, k, env, cwd))  # fmt: skip
        try:
            where = ray.get([n.where.remote() for n in self.nodes], timeout=NODES_START_S)
        except Exception as exc:
            how = f"the other nodes' Ray actors of this run did not start within {NODES_START_S:.0f} s: {type(exc).__name__}: {exc}"
            runs.transition(
                engine, run_id=run_id, to=RunStatus.FAILED, expect=[RunStatus.QUEUED], on_attempt=attempt,
                run_in=RunUpdate(error=how, phase=None), message=how[:500],
            )  # fmt: skip
            return None
        return _Spread(endpoint=f"{ip}:{_free_port(ip)}", nnodes=nnodes, nproc=nproc, where=where)

    def _watch_nodes(self, engine: Engine, run_id: str, attempt: int, spread: _Spread) -> int:
        """Wait for the supervisor; start the other nodes' torchrun once ours hosts the rendezvous, and end the run
        `lost` when one of their Ray actors dies (its node or its Ray worker): the ranks here would otherwise wait on
        collectives that never complete."""
        assert self.supervisor is not None
        host, port = spread.endpoint.rsplit(":", 1)
        pending: dict[Any, int] = {}  # the other nodes' run() results -> node_rank
        started = False
        while (code := self.supervisor.poll()) is None:
            if not started and _accepts(host, int(port)):
                pending = {n.run.remote(spread.nnodes, spread.nproc, spread.endpoint): k for k, n in enumerate(self.nodes, start=1)}
                started = True
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0) if pending else ([], [])
            for ref in done:
                k = pending.pop(ref)
                try:
                    ended = ray.get(ref)
                except Exception as exc:  # RayActorError: the node or its Ray worker died
                    self._lose(engine, run_id, attempt, f"node_rank {k} of the run died: {type(exc).__name__}: {str(exc)[:300]}")
                    return self.supervisor.wait()
                if ended != 0:
                    add_event(engine, run_id=run_id, event_in=EventCreate(
                        kind="node ended", message=f"torchrun of node_rank {k} exited with {ended} (see train-node{k}.log)"))  # fmt: skip
            time.sleep(0.5)
        return code

    def _lose(self, engine: Engine, run_id: str, attempt: int, how: str) -> None:
        """End a run that lost a node `lost`, then stop this node's part of it (the supervisor; its torchrun and ranks
        die with it). In that order: the supervisor, killed, records nothing, and a housekeeping pass that found it
        gone first would name the wrong cause."""
        assert self.supervisor is not None
        runs.transition(
            engine, run_id=run_id, to=RunStatus.LOST, expect=ACTIVE, on_attempt=attempt,
            run_in=RunUpdate(error=how), message=how[:500],
        )  # fmt: skip
        self.supervisor.kill()
        self.supervisor.wait()

    def cancel(self, supervisor_pid: int | None) -> bool:
        """SIGTERM the supervisor (it checkpoints the run and stops it); only the one this actor started. The other
        nodes' torchrun get it too, as torchrun on one node passes it to its ranks."""
        proc = self.supervisor
        if proc is None or proc.poll() is not None or (supervisor_pid is not None and proc.pid != supervisor_pid):
            return False
        proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            node.cancel.remote()
        return True


@dataclass(frozen=True)
class _Spread:
    endpoint: str  # host:port of the c10d rendezvous, on node_rank 0
    nnodes: int
    nproc: int
    where: list[tuple[str, str, str]]  # (Ray node id, IP, host name) of node_rank 1..nnodes-1


def _free_port(ip: str) -> int:
    """A port free on this node now, for torchrun's rendezvous to take a moment later."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


@ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=3)  # where(), run() and cancel()
class NodeActor:
    """node_rank k (k >= 1) of a run spanning nodes, in bundle k of its placement group: runs that node's torchrun
    (its ranks join the rendezvous on node_rank 0) and writes nothing to the store but through the ranks. Its
    torchrun dies with it (lifeline), and it dies with the run's actor (whose it is)."""

    def __init__(self, run_id: str, node_rank: int, env: dict[str, str], cwd: str) -> None:
        self.run_id, self.node_rank, self.env, self.cwd = run_id, node_rank, env, cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def where(self) -> tuple[str, str, str]:
        return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address(), socket.gethostname()

    def run(self, nnodes: int, nproc: int, endpoint: str) -> int:
        from workbench.runner.supervisor import torchrun_command
        from workbench.settings import reset_settings

        os.environ.update(self.env)
        os.environ["WORKBENCH_HOST"] = socket.gethostname()  # the ranks here judge this machine's load
        os.environ[lifeline.ENV] = str(os.getpid())  # torchrun and its ranks die with this actor
        reset_settings()
        settings = get_settings()
        command = torchrun_command(
            self.run_id, nproc, nnodes=nnodes, node_rank=self.node_rank, endpoint=endpoint, node_ip=ray.util.get_node_ip_address()
        )  # fmt: skip
        # a log per node: two machines appending to one file on a shared (NFS) folder would interleave badly
        with open(settings.runs_dir / self.run_id / f"train-node{self.node_rank}.log", "ab", buffering=0) as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=self.cwd if os.path.isdir(self.cwd) else str(settings.home_dir),
            )  # fmt: skip
            return self.proc.wait()

    def cancel(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGTERM)
        return True
