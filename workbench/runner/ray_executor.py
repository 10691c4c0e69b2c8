"""The ray executor (`WORKBENCH_EXECUTOR=ray`, `RAY_ADDRESS=host:port` of an existing cluster): Ray places each
run's supervisor on a node that has the resources the run asks for.

How a run goes:
  1. Launch or resume inserts the run `queued`, as with the local executor. The housekeeping pass hands every queued
     run to Ray at once as a detached actor `wb-run-<id>-<attempt>` in the `workbench` namespace asking
     `ray_cpus_per_process * nproc_per_node` CPUs and, when the run trains on CUDA, `nproc_per_node` GPUs. The run
     stays `queued` (phase "waiting in Ray's queue ...") while the actor waits in Ray's scheduler; our own slots
     (`max_concurrent_runs`) play no part. Detached: the actor outlives the UI or CLI that submitted it.
  2. Once Ray has placed it, the actor moves the run `queued -> starting` (compare-and-set on the attempt: a run
     cancelled or resumed meanwhile is left alone), records the node (run.host = the node's hostname; an event
     names Ray's node id and IP), and starts the ordinary supervisor, `python -m workbench.runner.supervisor RUN_ID
     ATTEMPT`, as its child: claim, worker or torchrun, heartbeats, cooperative cancel and the journal are as under
     the local executor. The supervisor and everything below it die with the actor (WORKBENCH_DIE_WITH_PARENT, see
     runner/lifeline.py), so a killed Ray worker leaves no training behind. When the supervisor ends, the actor
     exits and gives its resources back to Ray.
  3. Liveness (housekeeping, every few seconds in every run's actor, the UI server and `workbench run --wait`): an
     active run whose actor Ray reports dead (its worker process or its node died) is `lost`, with Ray's reason; the
     heartbeat rule still holds too. A queued run whose actor vanished before it started ends `failed` with Ray's
     reason. Neither rule looks at a run's host, and a run waiting in Ray has no heartbeat to judge.
  4. Cancel sets the run's flag and asks the actor to SIGTERM the supervisor (which checkpoints and stops, as
     today); a run still in Ray's queue is cancelled and its actor killed. A supervisor that has not ended its run
     `cancel_grace_s + KILL_MARGIN_S` after the request is killed with `ray.kill` and the run ends `cancelled`.

The store must be shared: with SQLite (one machine's file) on a cluster of more than one node, connect() refuses.
Run folders live under WORKBENCH_HOME, which every node must mount at the same path (docs/cluster.md).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import ray
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from workbench.runner import lifeline
from workbench.runner.executor import ExecutorError
from workbench.settings import Settings, get_settings
from workbench.store import runs
from workbench.store.events import add_event, list_events
from workbench.store.models import ACTIVE, EventCreate, RunRead, RunStatus, RunUpdate

NAMESPACE = "workbench"
WAITING = "waiting in Ray's queue"  # run.phase of a queued run whose actor Ray holds (marks it as submitted)
KILL_MARGIN_S = 15.0  # beyond cancel_grace_s: the supervisor's own SIGKILL of the worker and its last writes
# settings the actor must not take from the process that submitted it: they describe that machine
_NOT_FORWARDED = {"WORKBENCH_HOST"}


def actor_name(run_id: str, attempt: int) -> str:
    return f"wb-run-{run_id}-{attempt}"


def refuse_unshared_store(database_url: str, alive_nodes: int) -> None:
    """SQLite is a file on one machine: a cluster of several nodes needs the shared PostgreSQL store."""
    if alive_nodes > 1 and make_url(database_url).get_backend_name() == "sqlite":
        raise ExecutorError(
            f"WORKBENCH_EXECUTOR=ray on a cluster of {alive_nodes} nodes needs a store every node can reach, and "
            f"the store is SQLite ({make_url(database_url).database}), a file on this machine. Set WORKBENCH_DB_URL "
            "to a PostgreSQL database (postgresql+psycopg://user@host/db) for every process, UI and nodes alike "
            "(docs/cluster.md)."
        )


def run_resources(config: dict[str, Any], settings: Settings, cluster_gpus: float) -> tuple[float, int]:
    """(CPUs, GPUs) a run asks of Ray: `ray_cpus_per_process` per training process; one GPU per process when it
    trains on CUDA (`device: cuda`, or `auto` on a cluster that has GPUs)."""
    nproc = int(config.get("nproc_per_node", 1))
    device = config.get("device", "auto")
    on_cuda = device == "cuda" or (device == "auto" and cluster_gpus > 0)
    return settings.ray_cpus_per_process * nproc, nproc if on_cuda else 0


def connect(settings: Settings) -> RayExecutor:
    """Connect this process to the cluster at RAY_ADDRESS (once), and check that the store can be shared."""
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if not address:
            raise ExecutorError(
                "WORKBENCH_EXECUTOR=ray needs RAY_ADDRESS, the address of an existing Ray cluster (host:port of its "
                "head, as `ray start --head` prints it); the workbench never starts a cluster of its own."
            )
        # ray.init makes SIGTERM exit the process; a supervisor or study driver has its own handler (cooperative
        # cancel), which must stay
        previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        try:
            ray.init(address=address, namespace=NAMESPACE, logging_level="WARNING", log_to_driver=False)
        except Exception as exc:
            raise ExecutorError(f"could not reach the Ray cluster at RAY_ADDRESS={address}: {type(exc).__name__}: {exc}") from exc
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refuse_unshared_store(settings.database_url, len(nodes))
    return RayExecutor(nodes)


class RayExecutor:
    name = "ray"

    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes = nodes

    # -- launch ---------------------------------------------------------------------------------------------------
    def _cluster_gpus(self) -> float:
        return sum(float(n.get("Resources", {}).get("GPU", 0)) for n in self.nodes)

    def check_launch(self, config: dict[str, Any]) -> None:
        """A run no node could ever hold would wait in Ray forever: refuse it with what the nodes have."""
        cpus, gpus = run_resources(config, get_settings(), self._cluster_gpus())
        fits = any(
            float(n["Resources"].get("CPU", 0)) >= cpus and float(n["Resources"].get("GPU", 0)) >= gpus for n in self.nodes
        )
        if not fits:
            have = ", ".join(
                f"{n.get('NodeManagerAddress')}: {n['Resources'].get('CPU', 0):g} CPU, {n['Resources'].get('GPU', 0):g} GPU"
                for n in self.nodes
            )
            raise ExecutorError(
                f"no node of the Ray cluster has the {cpus:g} CPUs and {gpus} GPUs this run asks for "
                f"(nproc_per_node={config.get('nproc_per_node', 1)}, WORKBENCH_RAY_CPUS_PER_PROCESS="
                f"{get_settings().ray_cpus_per_process:g}); the nodes have: {have or 'no node is alive'}"
            )

    def start_queued(self, engine: Engine, settings: Settings) -> list[str]:
        """Hand every queued run not yet handed over to Ray; it waits there for a node. Under the scheduler lock, so
        no two passes submit one run."""
        submitted: list[str] = []
        for run in runs.queued_runs(engine):
            if run.kind == "import" or (run.phase or "").startswith(WAITING):
                continue
            cpus, gpus = run_resources(run.config, settings, self._cluster_gpus())
            name = actor_name(run.id, run.attempt)
            waiting = f"{WAITING} for {cpus:g} CPU" + (f", {gpus} GPU" if gpus else "")
            if not runs.update_run(engine, run_id=run.id, on_attempt=run.attempt, run_in=RunUpdate(phase=waiting)):
                continue  # resumed or deleted meanwhile
            try:
                actor = RunActor.options(  # type: ignore[attr-defined]
                    name=name, namespace=NAMESPACE, lifetime="detached", num_cpus=cpus, num_gpus=gpus,
                ).remote(run.id, run.attempt, _forwarded_env(settings), os.getcwd())  # fmt: skip
                _wait_until_ray_holds(actor)
            except ValueError as exc:
                if "already" not in str(exc):  # a duplicate name: this attempt is in Ray already
                    self._fail_submit(engine, run, exc)
                    continue
            except Exception as exc:
                self._fail_submit(engine, run, exc)
                continue
            add_event(engine, run_id=run.id, event_in=EventCreate(kind="submitted", message=f"handed to Ray as actor {name}: {waiting}"))
            submitted.append(run.id)
        return submitted

    @staticmethod
    def _fail_submit(engine: Engine, run: RunRead, exc: BaseException) -> None:
        how = f"Ray did not take the run: {type(exc).__name__}: {exc}"
        runs.transition(
            engine, run_id=run.id, to=RunStatus.FAILED, expect=[RunStatus.QUEUED], on_attempt=run.attempt,
            run_in=RunUpdate(error=how, phase=None), message=how[:500],
        )  # fmt: skip

    # -- liveness ---------------------------------------------------------------------------------------------------
    def why_lost(self, run: RunRead, settings: Settings, now: float) -> str | None:
        from workbench.runner import scheduler

        reason = scheduler.why_lost(run, settings, now)  # the supervisor's pid here, the heartbeat anywhere
        if reason is not None:
            return reason
        if _actor(run) is not None:
            return None
        info = _actor_info(actor_name(run.id, run.attempt))
        if info is None:  # never a Ray run (a local executor's, from before a switch): the rules above judge it
            return None
        return f"its Ray actor {actor_name(run.id, run.attempt)} died: {death_cause(info)}"

    def reconcile(self, engine: Engine, settings: Settings) -> list[str]:
        ended: list[str] = []
        for run in runs.queued_runs(engine):
            if (run.phase or "").startswith(WAITING) and _actor(run) is None:
                name = actor_name(run.id, run.attempt)
                how = f"its Ray actor {name} is gone before the run started: {death_cause(_actor_info(name))}"
                if runs.transition(
                    engine, run_id=run.id, to=RunStatus.FAILED, expect=[RunStatus.QUEUED], on_attempt=run.attempt,
                    run_in=RunUpdate(error=how, phase=None), message=how[:500],
                ):  # fmt: skip
                    ended.append(run.id)
        deadline = settings.cancel_grace_s + KILL_MARGIN_S
        for run in runs.active_runs(engine):
            if not run.cancel_requested:
                continue
            asked = _cancel_requested_at(engine, run)
            if asked is None or time.time() - asked < deadline:
                continue
            actor = _actor(run)
            if actor is not None:
                ray.kill(actor, no_restart=True)
            how = f"the run had not stopped {deadline:.0f} s after its cancel: Ray killed its actor (no final checkpoint)"
            if runs.transition(
                engine, run_id=run.id, to=RunStatus.CANCELLED, expect=ACTIVE, on_attempt=run.attempt,
                run_in=RunUpdate(error=how), message=how,
            ):  # fmt: skip
                ended.append(run.id)
        return ended

    # -- cancel -----------------------------------------------------------------------------------------------------
    def signal_cancel(self, run: RunRead) -> str | None:
        # a supervisor that has not recorded its start has no SIGTERM handler yet: it reads the flag once it has
        if run.supervisor_start is None:
            return None
        actor = _actor(run)
        if actor is None:
            return None
        actor.cancel.remote(run.supervisor_pid)
        return f"SIGTERM sent through Ray to its supervisor on {run.host}; the run saves a checkpoint and stops"

    def withdraw(self, run: RunRead) -> None:
        actor = _actor(run)
        if actor is not None:
            ray.kill(actor, no_restart=True)


def _actor(run: RunRead) -> Any | None:
    """The run's actor while Ray holds it (waiting for a node or alive); None once it is dead or was never made."""
    try:
        return ray.get_actor(actor_name(run.id, run.attempt), namespace=NAMESPACE)
    except ValueError:
        return None


def _actor_info(name: str) -> dict[str, Any] | None:
    """Ray's record of the newest actor of that name, dead ones included; None if Ray has none (never submitted, or
    a cluster restarted since)."""
    try:
        from ray._private import state  # no public call reads a dead actor's record without the dashboard

        infos = [a for a in state.actors().values() if a.get("Name") == name]
    except Exception:  # the private API moved: say nothing rather than guess
        return None
    return max(infos, key=lambda a: a.get("StartTime") or 0) if infos else None


def death_cause(info: dict[str, Any] | None) -> str:
    """Why Ray says the actor died (its worker process died, its node died, it was killed), as best Ray tells."""
    if info is None:
        return "Ray no longer knows it"
    said = re.findall(r'error_message: "((?:[^"\\]|\\.)*)"', str(info.get("DeathCause") or ""))
    where = (info.get("Address") or {}).get("IPAddress", "?")
    return f"{said[0] if said else 'no reason given'} (node {where}, pid {info.get('Pid')})"


def _cancel_requested_at(engine: Engine, run: RunRead) -> float | None:
    times = [e.time for e in list_events(engine, run_id=run.id, limit=1000) if e.kind == "cancel requested"]
    return max(times) if times else None


def _forwarded_env(settings: Settings) -> dict[str, str]:
    """The workbench settings of the submitting process the supervisor needs on its node (the store, the run
    folders, timings, task modules), but not what describes this machine (its host name)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("WORKBENCH_") and k not in _NOT_FORWARDED}
    env["WORKBENCH_HOME"] = str(settings.home_dir)
    env["WORKBENCH_EXECUTOR"] = "ray"
    if settings.db_url:
        env["WORKBENCH_DB_URL"] = settings.db_url
    return env


def _wait_until_ray_holds(actor: Any, timeout: float = 10.0) -> None:
    """Return once the cluster (not this process) holds the actor's creation: the submitter may be a CLI that exits
    right after, without a goodbye to Ray (cli.main ends with os._exit), and a creation still on its way would be lost."""
    try:
        from ray._private import state
    except ImportError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if state.actors(actor_id=actor._actor_id.hex()).get("State") not in (None, "DEPENDENCIES_UNREADY"):
                return
        except Exception:
            return  # the private API moved: nothing better to wait on
        time.sleep(0.02)


@ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=2)  # run() and cancel() at once
class RunActor:
    """One run's attempt on a node Ray chose: moves the run to `starting`, then runs its supervisor as a child.

    The work is a call the actor makes on itself once it is created: a call from the submitter would be owned by the
    submitter and die with it (a `workbench run --detach` is gone long before Ray finds a node), while the creation
    of a detached actor is the cluster's."""

    def __init__(self, run_id: str, attempt: int, env: dict[str, str], cwd: str) -> None:
        self.supervisor: subprocess.Popen[bytes] | None = None
        ray.get_runtime_context().current_actor.run.remote(run_id, attempt, env, cwd)

    def run(self, run_id: str, attempt: int, env: dict[str, str], cwd: str) -> int:
        try:
            return self._run(run_id, attempt, env, cwd)
        finally:
            ray.actor.exit_actor()  # give the CPUs/GPUs back to Ray (a detached actor lives on otherwise)

    def _run(self, run_id: str, attempt: int, env: dict[str, str], cwd: str) -> int:
        from workbench.runner.scheduler import PeriodicHousekeeping
        from workbench.settings import reset_settings
        from workbench.store import get_engine

        os.environ.update(env)
        os.environ.pop("WORKBENCH_HOST", None)
        reset_settings()
        settings = get_settings()
        engine = get_engine(settings.database_url)
        context = ray.get_runtime_context()
        node_id, ip, host = context.get_node_id(), ray.util.get_node_ip_address(), socket.gethostname()
        if not runs.transition(
            engine, run_id=run_id, to=RunStatus.STARTING, expect=[RunStatus.QUEUED], on_attempt=attempt,
            message=f"placed by Ray on node {node_id[:12]} ({ip}, host {host})",
            run_in=RunUpdate(host=host, heartbeat_at=time.time(), phase=None),
        ):  # fmt: skip
            return 0  # cancelled, resumed or deleted while it waited in Ray
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
            return self.supervisor.wait()
        finally:
            periodic.stop()

    def cancel(self, supervisor_pid: int | None) -> bool:
        """SIGTERM the supervisor (it checkpoints the run and stops it); only the one this actor started."""
        proc = self.supervisor
        if proc is None or proc.poll() is not None or (supervisor_pid is not None and proc.pid != supervisor_pid):
            return False
        proc.send_signal(signal.SIGTERM)
        return True
