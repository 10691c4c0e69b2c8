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
  2. Once Ray has placed it, the actor (runner/ray_actors.py) moves the run `queued -> starting` (compare-and-set on the attempt: a run
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
from workbench.runner.executor import ExecutorError
from workbench.runner.ray_actors import NAMESPACE, RunActor, actor_name
from workbench.runner.ray_records import actor_info, death_cause, wait_until_ray_holds
from workbench.settings import Settings, get_settings
from workbench.store import runs
from workbench.store.events import add_event, list_events
from workbench.store.models import ACTIVE, EventCreate, RunRead, RunStatus, RunUpdate

WAITING = "waiting in Ray's queue"  # run.phase of a queued run whose actor Ray holds (marks it as submitted)
KILL_MARGIN_S = 15.0  # beyond cancel_grace_s: the supervisor's own SIGKILL of the worker and its last writes
# settings the actor must not take from the process that submitted it: they describe that machine
_NOT_FORWARDED = {"WORKBENCH_HOST"}


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
                wait_until_ray_holds(actor)
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
        info = actor_info(actor_name(run.id, run.attempt))
        if info is None:  # never a Ray run (a local executor's, from before a switch): the rules above judge it
            return None
        return f"its Ray actor {actor_name(run.id, run.attempt)} died: {death_cause(info)}"

    def reconcile(self, engine: Engine, settings: Settings) -> list[str]:
        ended: list[str] = []
        for run in runs.queued_runs(engine):
            if (run.phase or "").startswith(WAITING) and _actor(run) is None:
                name = actor_name(run.id, run.attempt)
                how = f"its Ray actor {name} is gone before the run started: {death_cause(actor_info(name))}"
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
