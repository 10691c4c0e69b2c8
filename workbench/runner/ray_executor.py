"""The ray executor (`WORKBENCH_EXECUTOR=ray`, `RAY_ADDRESS=host:port` of an existing cluster): Ray places each
run's supervisor on a node that has the resources the run asks for.

How a run goes:
  1. Launch or resume inserts the run `queued`, as with the local executor. The housekeeping pass hands every queued
     run to Ray at once as a detached actor `wb-run-<id>-<attempt>` in the `workbench` namespace asking what the
     config's `resources` says, by default `ray_cpus_per_process * nproc_per_node` CPUs and, when the run trains on
     CUDA, `nproc_per_node` GPUs (run_resources). The run stays `queued` (phase "waiting in Ray's queue ...") while
     the actor waits in Ray's scheduler; our own slots (`max_concurrent_runs`) play no part. Detached: the actor
     outlives the UI or CLI that submitted it. A run with `nnodes > 1` also gets a detached placement group of
     `nnodes` such bundles (STRICT_SPREAD); its actor takes bundle 0 and starts a NodeActor in each other bundle, each
     running its node's torchrun against the c10d rendezvous that node_rank 0's torchrun hosts (RunActor).
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
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util import get_placement_group, placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from workbench.config.common import RunResources
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


@dataclass(frozen=True)
class Ask:
    """What a run asks of Ray on each node it spans: one actor's resources, or one bundle of its placement group."""

    cpus: float
    gpus: float
    custom: dict[str, float] = field(default_factory=dict)
    nnodes: int = 1

    def bundle(self) -> dict[str, float]:
        """As Ray names them; zero amounts left out (Ray refuses a bundle entry of 0)."""
        return {k: v for k, v in {"CPU": self.cpus, "GPU": self.gpus, **self.custom}.items() if v > 0}

    def fits(self, node_resources: dict[str, Any]) -> bool:
        """Could a node with these total resources ever hold one node's share of the run?"""
        return all(float(node_resources.get(k, 0)) >= v for k, v in self.bundle().items())

    def __str__(self) -> str:
        parts = [f"{self.cpus:g} CPU"] + ([f"{self.gpus:g} GPU"] if self.gpus else []) + [f"{v:g} {k}" for k, v in self.custom.items()]
        return ", ".join(parts) + (f" on each of {self.nnodes} nodes" if self.nnodes > 1 else "")


def run_resources(config: dict[str, Any], settings: Settings, cluster_gpus: float) -> Ask:
    """What a run asks of Ray on each node: the config's `resources` where it says, else `ray_cpus_per_process` per
    training process and, when it trains on CUDA (`device: cuda`, or `auto` on a cluster that has GPUs), one GPU per
    process. (configs stored before `resources` and `nnodes` existed have neither key: the defaults apply.)"""
    wanted = RunResources.model_validate(config.get("resources") or {})
    nproc = int(config.get("nproc_per_node", 1))
    device = config.get("device", "auto")
    on_cuda = device == "cuda" or (device == "auto" and cluster_gpus > 0)
    cpus = wanted.cpus if wanted.cpus is not None else settings.ray_cpus_per_process * nproc
    gpus = wanted.gpus if wanted.gpus is not None else (nproc if on_cuda else 0)
    return Ask(cpus=float(cpus), gpus=float(gpus), custom=dict(wanted.custom), nnodes=int(config.get("nnodes", 1)))


def _said(resources: dict[str, Any]) -> str:
    """The `resources` a config sets, without the unset ones: `{cpus: 3}`, or `defaults`."""
    given = {k: v for k, v in resources.items() if v not in (None, {})}
    return "{" + ", ".join(f"{k}: {v:g}" if isinstance(v, float) else f"{k}: {v}" for k, v in given.items()) + "}" if given else "defaults"


def placement_group_name(run_id: str, attempt: int) -> str:
    return f"wb-pg-{run_id}-{attempt}"


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
        """A run no node could ever hold would wait in Ray forever: refuse it with what the nodes have, unless the
        cluster autoscales (`ray_autoscaling`: Ray's queue is where the autoscaler sees the demand). A run that fits
        a node but not what is free now waits in Ray's queue; so does one spanning nodes that are all busy."""
        ask = run_resources(config, get_settings(), self._cluster_gpus())
        able = [n for n in self.nodes if ask.fits(n.get("Resources", {}))]
        if len(able) < ask.nnodes and not get_settings().ray_autoscaling:
            have = "; ".join(
                f"{n.get('NodeManagerAddress')}: " + ", ".join(f"{v:g} {k}" for k, v in sorted(n.get("Resources", {}).items())
                                                               if k in ("CPU", "GPU") or k in ask.custom)
                for n in self.nodes
            )  # fmt: skip
            where = "no node" if ask.nnodes == 1 else f"{len(able)} node(s) of the {ask.nnodes} a run with nnodes={ask.nnodes} needs"
            raise ExecutorError(
                f"{where} of the Ray cluster {'has' if ask.nnodes == 1 else 'have'} the {ask} this run asks for "
                f"(resources: {_said(config.get('resources') or {})}, nproc_per_node: {config.get('nproc_per_node', 1)}, "
                f"WORKBENCH_RAY_CPUS_PER_PROCESS={get_settings().ray_cpus_per_process:g}); the nodes have: "
                f"{have or 'no node is alive'}. On a cluster that adds nodes on demand, set WORKBENCH_RAY_AUTOSCALING=true "
                "to let such a run wait in Ray's queue."
            )

    def start_queued(self, engine: Engine, settings: Settings) -> list[str]:
        """Hand every queued run not yet handed over to Ray; it waits there for a node (or, spanning nodes, for its
        placement group). Under the scheduler lock, so no two passes submit one run."""
        submitted: list[str] = []
        for run in runs.queued_runs(engine):
            if run.kind == "import" or (run.phase or "").startswith(WAITING):
                continue
            ask = run_resources(run.config, settings, self._cluster_gpus())
            name = actor_name(run.id, run.attempt)
            waiting = f"{WAITING} for {ask}"
            if not runs.update_run(engine, run_id=run.id, on_attempt=run.attempt, run_in=RunUpdate(phase=waiting)):
                continue  # resumed or deleted meanwhile
            try:
                options: dict[str, Any] = {"num_cpus": ask.cpus, "num_gpus": ask.gpus, "resources": ask.custom}
                group = None
                if ask.nnodes > 1:
                    # one bundle per node, each on a different node; the run's actor takes bundle 0 and starts the
                    # other nodes' torchrun in bundles 1.. once Ray has reserved them all. Detached: it outlives the
                    # process that submits it (a CLI); the run's actor or the housekeeping sweep removes it.
                    group = _existing_group(placement_group_name(run.id, run.attempt)) or placement_group(
                        [ask.bundle()] * ask.nnodes, strategy="STRICT_SPREAD",
                        name=placement_group_name(run.id, run.attempt), lifetime="detached",
                    )  # fmt: skip
                    options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)
                actor = RunActor.options(  # type: ignore[attr-defined]
                    name=name, namespace=NAMESPACE, lifetime="detached", **options,
                ).remote(run.id, run.attempt, _forwarded_env(settings), os.getcwd(), group)  # fmt: skip
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
        _remove_group(placement_group_name(run.id, run.attempt))
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
        _sweep_placement_groups(engine)
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
        _remove_group(placement_group_name(run.id, run.attempt))


def _existing_group(name: str) -> Any | None:
    """The placement group of that name in our namespace, if Ray has one (a submission that got this far before)."""
    try:
        return get_placement_group(name)
    except ValueError:
        return None


def _remove_group(name: str) -> None:
    """Give a run's placement group (and whatever still runs in its bundles) back to Ray; nothing if it has none."""
    group = _existing_group(name)
    if group is not None:
        try:
            remove_placement_group(group)
        except Exception:
            pass  # removed meanwhile (the run's actor does it at its end)


def _sweep_placement_groups(engine: Engine) -> None:
    """Remove the placement groups of runs no longer waiting or active on that attempt: the run's own actor removes
    its group at its end, but an actor that died with its node, or a cancel through ray.kill, leaves it holding the
    other nodes' bundles."""
    for info in placement_group_table().values():
        found = re.fullmatch(r"wb-pg-(.+)-(\d+)", info.get("name") or "")
        if found is None or info.get("state") == "REMOVED":
            continue
        run_id, attempt = found.group(1), int(found.group(2))
        try:
            run = runs.get_run(engine, run_id=run_id)
        except runs.RunNotFound:
            continue  # deleted, or another store's run on a shared cluster: only our own runs' groups are ours
        if run.attempt == attempt and (run.status in ACTIVE or (run.status == RunStatus.QUEUED and (run.phase or "").startswith(WAITING))):
            continue
        _remove_group(info["name"])


def _actor(run: RunRead) -> Any | None:
    """The run's actor while Ray holds it (waiting for a node or alive); None once it is dead or was never made."""
    try:
        return ray.get_actor(actor_name(run.id, run.attempt), namespace=NAMESPACE)
    except ValueError:
        return None


@dataclass(frozen=True)
class ActorRecord:
    """Ray's record of one actor, dead ones included, as the two ways of reading it (below) both give it."""

    state: str  # DEPENDENCIES_UNREADY, PENDING_CREATION, ALIVE, RESTARTING, DEAD
    cause: str | None  # Ray's error message, once it is dead
    where: str  # "node <IP or Ray node id>"
    pid: int | None
    start: float  # for the newest of several records of one name


_state_api: bool | None = None  # does this cluster serve Ray's public state API? (found out once per process)


def _actor_records(*, name: str | None = None, actor_id: str | None = None) -> list[ActorRecord]:
    """Ray's records of the actors of that name or id, dead ones included.

    ray.util.state is the public way; it is served by the dashboard (`ray[default]`, the default of `ray start`).
    A cluster without it (the `ray` extra installs plain `ray`; the test clusters run no dashboard) has no public
    call that reads a dead actor's record or a pending one's state, so the GCS accessor in ray._private.state is read
    instead. Either way an error here says nothing rather than guesses: callers treat [] as "Ray has no record"."""
    global _state_api
    if _state_api is not False:
        try:
            from ray.util.state import list_actors

            found = list_actors(
                filters=[("name", "=", name)] if name is not None else [("actor_id", "=", actor_id)],
                detail=True, timeout=5, raise_on_missing_output=False,
            )  # fmt: skip
            _state_api = True
            return [_record_of_state(a) for a in found]
        except Exception:
            if _state_api is None:
                _state_api = False  # no dashboard: the private accessor from now on
            else:
                return []
    try:
        from ray._private import state  # see the docstring: no public call without the dashboard

        if actor_id is not None:
            one = state.actors(actor_id=actor_id)
            infos = [one] if one else []
        else:
            infos = [a for a in state.actors().values() if a.get("Name") == name]
    except Exception:  # the private API moved
        return []
    return [_record_of_gcs(a) for a in infos]


def _record_of_state(actor: Any) -> ActorRecord:
    cause = getattr(actor, "death_cause", None) or {}
    said = next((c.get("error_message") for c in cause.values() if isinstance(c, dict) and c.get("error_message")), None)
    return ActorRecord(
        state=str(actor.state), cause=said, where=f"node {(actor.node_id or '?')[:12]}",
        pid=actor.pid, start=0.0,
    )  # fmt: skip


def _record_of_gcs(info: dict[str, Any]) -> ActorRecord:
    said = re.findall(r'error_message: "((?:[^"\\]|\\.)*)"', str(info.get("DeathCause") or ""))
    return ActorRecord(
        state=str(info.get("State")), cause=said[0] if said else None, where=f"node {(info.get('Address') or {}).get('IPAddress', '?')}",
        pid=info.get("Pid"), start=float(info.get("StartTime") or 0),
    )  # fmt: skip


def _actor_info(name: str) -> ActorRecord | None:
    """Ray's record of the newest actor of that name, dead ones included; None if Ray has none (never submitted, or
    a cluster restarted since)."""
    records = _actor_records(name=name)
    return max(records, key=lambda r: r.start) if records else None


def death_cause(info: ActorRecord | None) -> str:
    """Why Ray says the actor died (its worker process died, its node died, it was killed), as best Ray tells."""
    if info is None:
        return "Ray no longer knows it"
    return f"{info.cause or 'no reason given'} ({info.where}, pid {info.pid})"


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
    right after, without a goodbye to Ray (cli.main ends with os._exit), and a creation still on its way would be lost.
    (Registering a named actor is synchronous, so `ray.get_actor` finds it at once; only the actor's record says
    whether its creation has left this process: see _actor_records.)"""
    deadline = time.time() + timeout
    actor_id = actor._actor_id.hex()
    while time.time() < deadline:
        records = _actor_records(actor_id=actor_id)  # [] until the GCS has it, or when it cannot be read at all
        if records and records[0].state not in ("None", "DEPENDENCIES_UNREADY"):
            return
        time.sleep(0.02)


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
        """Stop this node's part of a run that lost a node (the supervisor, its torchrun and ranks die with it), then
        say so: the supervisor, killed, records nothing."""
        assert self.supervisor is not None
        self.supervisor.kill()
        self.supervisor.wait()
        runs.transition(
            engine, run_id=run_id, to=RunStatus.LOST, expect=ACTIVE, on_attempt=attempt,
            run_in=RunUpdate(error=how), message=how[:500],
        )  # fmt: skip

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


NODES_START_S = 120.0  # the other nodes' actors get this long to start once Ray has reserved their bundles


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
