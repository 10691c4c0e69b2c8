"""The ray executor on a local cluster of two nodes on this machine (a head with 1 CPU, and a second raylet with 1 CPU
and a custom resource `wbtest` only it has), with a throwaway PostgreSQL store (SQLite is refused on two nodes):
a run asking for the custom resource lands on the node that has it; a run spanning both nodes (`nnodes: 2`) gets a
STRICT_SPREAD placement group, torchrun on each node meets at the c10d rendezvous on the first, the ctr_stream quick
preset trains on 2 ranks to `completed` and the run records both nodes; a cancel reaches the ranks of both nodes;
the placement group is given back at the end. One machine: both nodes share its loopback address, its disk and its
clock; docs/cluster.md says what that leaves untested."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.support.ray_cluster import RayHead, require
from tests.support.waiting import wait_for, wait_status
from workbench import api

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("store_backend", ["postgresql"], indirect=True)]
ENDED = ("completed", "failed", "cancelled", "lost", "pruned")


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[RayHead, str, str]]:
    """(cluster, head's node id, second node's node id)."""
    require()
    import ray

    head = RayHead(cpus=1)
    try:
        head.start(env={**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]})
        ray.init(address=head.address, namespace="workbench", logging_level="WARNING", log_to_driver=False)
        head.add_node(cpus=1, resources={"wbtest": 1})
    except RuntimeError as exc:
        head.stop()
        pytest.fail(f"the local two-node Ray cluster did not start: {exc}")
    try:
        alive = [n for n in ray.nodes() if n["Alive"]]
        head_id = next(n["NodeID"] for n in alive if "wbtest" not in n["Resources"])
        second_id = next(n["NodeID"] for n in alive if "wbtest" in n["Resources"])
        yield head, head_id, second_id
    finally:
        if ray.is_initialized():
            ray.shutdown()
        head.stop()


@pytest.fixture()
def ray_home(home, two_nodes, monkeypatch):  # type: ignore[no-untyped-def]
    from workbench.settings import get_settings, reset_settings

    monkeypatch.setenv("WORKBENCH_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", two_nodes[0].address)
    monkeypatch.setenv("WORKBENCH_RAY_CPUS_PER_PROCESS", "1")
    monkeypatch.setenv("WORKBENCH_HOUSEKEEPING_S", "1")
    reset_settings()
    assert get_settings().db_url, "two nodes need the PostgreSQL store"
    return home


def _linreg(**overrides):  # type: ignore[no-untyped-def]
    from tests.support.linreg_task import LinRegConfig

    return LinRegConfig(**overrides)


def _groups_of(run_id: str) -> list[dict]:
    from ray.util import placement_group_table

    return [g for g in placement_group_table().values() if (g.get("name") or "").startswith(f"wb-pg-{run_id}-")]


def _processes_naming(run_id: str) -> list[psutil.Process]:
    """Supervisors, torchruns and ranks of the run: each has the run id on its command line."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and run_id in (p.info["cmdline"] or []):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def test_a_run_asking_for_a_custom_resource_lands_on_the_node_that_has_it(ray_home, two_nodes):
    _, head_id, second_id = two_nodes
    run = api.launch_run(_linreg(epochs=2, resources={"custom": {"wbtest": 1}}), name="needs-wbtest")
    assert any("1 CPU, 1 wbtest" in e.message for e in api.events(run.id) if e.kind == "submitted"), api.events(run.id)
    done = wait_status(run.id, ENDED, timeout=180)
    assert done.status == "completed", (done.status, done.error)
    placed = next(e.message for e in api.events(run.id) if e.kind == "starting")
    assert second_id[:12] in placed and head_id[:12] not in placed, placed


def test_a_run_no_two_nodes_can_hold_is_refused_at_launch(ray_home):
    with pytest.raises(api.ExecutorError, match=r"1 node\(s\) of the 2 a run with nnodes=2 needs"):
        api.launch_run(_linreg(nnodes=2, resources={"custom": {"wbtest": 1}}), name="only-one-node-has-it")
    with pytest.raises(api.ExecutorError, match=r"2 node\(s\) of the 3"):
        api.launch_run(_linreg(nnodes=3), name="three-nodes")
    assert api.list_runs() == []


def test_ctr_stream_quick_on_two_nodes_completes_and_records_both(ray_home, two_nodes):
    from workbench.config.io import load_config_file

    _, head_id, second_id = two_nodes
    # rdzv_endpoint: ctr_stream's rule asks for one with nnodes > 1 (machines joining by hand under the local
    # executor); the ray executor hosts the rendezvous on the node Ray gives node_rank 0 and ignores it
    overrides = ["nnodes=2", "nproc_per_node=1", "shard_num=2", "rdzv_endpoint=ignored-by-ray:1"]
    cfg = load_config_file("configs/ctr_stream/quick.yaml", overrides=overrides)
    run = api.launch_run(cfg, name="ctr-two-nodes")
    assert any("on each of 2 nodes" in e.message for e in api.events(run.id) if e.kind == "submitted")
    done = wait_status(run.id, ENDED, timeout=420)
    assert done.status == "completed", (done.status, done.error, (api.run_dir(run.id) / "train.log").read_text()[-3000:])
    placed = next(e.message for e in api.events(run.id) if e.kind == "starting")
    assert placed.startswith("placed by Ray on 2 nodes: node_rank 0 on node ")
    assert head_id[:12] in placed and second_id[:12] in placed, placed  # STRICT_SPREAD: one rank on each node
    logs = api.run_dir(run.id) / "train.log", api.run_dir(run.id) / "train-node1.log"
    assert all(log.exists() for log in logs)
    both = "".join(log.read_text() for log in logs)
    assert "world size 2" in both and "[rank 0]" in both and "[rank 1]" in both
    assert api.checkpoints(run.id)
    wait_for(lambda: all(g["state"] == "REMOVED" for g in _groups_of(run.id)), timeout=30, what="the placement group to be removed")
    assert _groups_of(run.id), "the run had a placement group"
    wait_for(lambda: not _processes_naming(run.id), timeout=30, what="every process of the run to end")


def test_a_cancel_reaches_the_ranks_on_both_nodes(ray_home):
    run = api.launch_run(_linreg(epochs=400, step_sleep_s=0.05, nnodes=2), name="spread-cancel")
    wait_for(lambda: (api.get_run(run.id).progress_done or 0) > 10, timeout=180, what="both nodes' ranks to train")
    log = (api.run_dir(run.id) / "train.log").read_text() + (api.run_dir(run.id) / "train-node1.log").read_text()
    assert "world size 2" in log, log[-2000:]
    assert api.cancel_run(run.id) == "cancel requested"
    done = wait_status(run.id, ENDED, timeout=90)
    assert done.status == "cancelled", (done.status, done.error)
    assert api.checkpoints(run.id), "a cancelled run saves a checkpoint before it stops"
    wait_for(lambda: not _processes_naming(run.id), timeout=30, what="every process of the run, on both nodes, to end")
    wait_for(lambda: all(g["state"] == "REMOVED" for g in _groups_of(run.id)), timeout=30, what="the placement group to be removed")


def test_a_dead_second_node_actor_leaves_the_spread_run_lost(ray_home):
    run = api.launch_run(_linreg(epochs=400, step_sleep_s=0.05, nnodes=2), name="spread-kill")
    wait_for(lambda: (api.get_run(run.id).progress_done or 0) > 10, timeout=180, what="both nodes' ranks to train")
    # node_rank 1's torchrun names the run and node_rank 1; its parent is the NodeActor's Ray worker process
    torchrun = next(p for p in _processes_naming(run.id) if "--node_rank=1" in p.cmdline())
    actor = torchrun.parent()
    assert actor is not None and "NodeActor" in " ".join(actor.cmdline()), actor and actor.cmdline()
    killed_at = time.time()
    actor.kill()
    done = wait_status(run.id, ENDED, timeout=30)
    assert time.time() - killed_at < 30
    assert done.status == "lost" and "node_rank 1" in (done.error or ""), (done.status, done.error)
    wait_for(lambda: not _processes_naming(run.id), timeout=30, what="every process of the run to end")
    wait_for(lambda: all(g["state"] == "REMOVED" for g in _groups_of(run.id)), timeout=30, what="the placement group to be removed")
