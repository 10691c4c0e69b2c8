"""The ray executor on a real local Ray cluster (one head, 2 CPUs, started for this module and stopped at its end):
the quick preset of each task completes through the CLI (the third waits in Ray's queue while two train), a cancel
ends `cancelled` with a checkpoint, a killed Ray worker leaves the run `lost` within 30 s with nothing of it still
running, and a study runs 4 trials 2 at a time through Ray. SQLite is allowed here: the cluster has one node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.ray_cluster import RayHead, require
from tests.support.waiting import wait_for, wait_status
from workbench import api

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
ENDED = ("completed", "failed", "cancelled", "lost", "pruned")


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    require()
    head = RayHead(cpus=2)
    try:
        head.start(env={**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]})
    except RuntimeError as exc:
        head.stop()
        pytest.fail(f"the local Ray head did not start: {exc}")  # Ray is installed: a head that cannot start is a bug
    try:
        yield head
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        head.stop()


@pytest.fixture()
def ray_home(home, ray_head, monkeypatch):  # type: ignore[no-untyped-def]
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", ray_head.address)
    monkeypatch.setenv("WORKBENCH_RAY_CPUS_PER_PROCESS", "1")
    monkeypatch.setenv("WORKBENCH_HOUSEKEEPING_S", "1")
    reset_settings()
    return home


def wb(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def _linreg(**overrides):  # type: ignore[no-untyped-def]
    from tests.support.linreg_task import LinRegConfig

    return LinRegConfig(**overrides)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_quick_preset_of_each_task_completes_and_the_third_waits_in_ray(ray_home):
    ids = []
    for task in ("recommendation", "ctr_stream", "spleeter"):
        out = wb("run", f"configs/{task}/quick.yaml", "--detach", "--name", f"{task}-ray", home=ray_home)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        ids.append(next(r.id for r in api.list_runs() if r.name == f"{task}-ray"))
    # 2 CPUs, 1 CPU a run: two train and the third waits in Ray's scheduler (still `queued`, not in ours)
    def two_active_one_waiting():  # type: ignore[no-untyped-def]
        now = [api.get_run(i) for i in ids]
        active = [r for r in now if r.status in ("starting", "running")]
        waiting = [r for r in now if r.status == "queued" and (r.phase or "").startswith("waiting in Ray")]
        return waiting if len(active) == 2 and len(waiting) == 1 else None

    waiting = wait_for(two_active_one_waiting, timeout=60, interval=0.1, what="two runs training and one waiting in Ray")
    assert "for 1 CPU" in (waiting[0].phase or "")
    done = [wait_status(i, ENDED, timeout=600) for i in ids]
    assert [r.status for r in done] == ["completed"] * 3, [(r.name, r.status, r.error) for r in done]
    for run in done:
        kinds = [e.kind for e in api.events(run.id)]
        assert kinds[:4] == ["queued", "submitted", "starting", "running"], kinds
        placed = next(e.message for e in api.events(run.id) if e.kind == "starting")
        assert placed.startswith("placed by Ray on node ") and run.host and run.host in placed
        assert api.checkpoints(run.id), run.name
    shown = json.loads(wb("show", ids[0], "--json", home=ray_home).stdout)
    assert shown["status"] == "completed"


def test_cancel_checkpoints_then_ends_cancelled_and_resume_continues(ray_home):
    run = api.launch_run(_linreg(epochs=50, step_sleep_s=0.02), name="to-cancel")
    wait_for(lambda: api.get_run(run.id).progress_done, timeout=60, what="the run to make progress")
    running = wait_status(run.id, ("running",), timeout=30)
    assert api.cancel_run(run.id) == "cancel requested"
    assert "through Ray" in api.events(run.id)[-1].message
    done = wait_status(run.id, ENDED, timeout=60)
    assert done.status == "cancelled", (done.status, done.error)
    assert api.checkpoints(run.id), "a cancelled run saves a checkpoint before it stops"
    wait_for(lambda: not _alive(running.worker_pid) and not _alive(running.supervisor_pid), timeout=20, what="its processes to end")
    stopped_at = max(c.step for c in api.checkpoints(run.id))
    resumed = api.resume_run(run.id)
    assert resumed.attempt == 2
    done = wait_status(run.id, ENDED, timeout=120)
    assert done.status == "completed", (done.status, done.error)
    assert [e.kind for e in api.events(run.id)].count("submitted") == 2, "the resumed attempt went through Ray too"
    assert stopped_at < max(c.step for c in api.checkpoints(run.id)) and done.progress_done == done.progress_total


def test_a_supervisor_that_ignores_its_cancel_is_killed_through_ray_after_the_grace_period(ray_home, monkeypatch):
    from workbench.runner.ray_executor import KILL_MARGIN_S
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_CANCEL_GRACE_S", "2")
    reset_settings()
    run = api.launch_run(_linreg(epochs=400, step_sleep_s=0.02), name="stuck")
    wait_status(run.id, ("running",), timeout=60)
    wait_for(lambda: api.get_run(run.id).worker_pid, timeout=30, what="the worker's pid")
    running = api.get_run(run.id)
    os.kill(running.supervisor_pid, signal.SIGSTOP)  # a hung supervisor: it neither forwards the cancel nor beats
    try:
        asked_at = time.time()
        assert api.cancel_run(run.id) == "cancel requested"

        def ended():  # type: ignore[no-untyped-def]
            api.housekeeping()
            now = api.get_run(run.id)
            return now if now.status in ENDED else None

        done = wait_for(ended, timeout=2 + KILL_MARGIN_S + 15, interval=0.5, what="Ray to kill the stuck run")
    finally:
        if _alive(running.supervisor_pid):
            os.kill(running.supervisor_pid, signal.SIGCONT)
    assert done.status == "cancelled" and "Ray killed its actor" in (done.error or ""), (done.status, done.error)
    assert time.time() - asked_at >= 2 + KILL_MARGIN_S
    wait_for(lambda: not _alive(running.supervisor_pid) and not _alive(running.worker_pid), timeout=10, what="its processes to die")


def test_a_cancel_while_waiting_in_ray_takes_it_out_of_the_queue(ray_home, monkeypatch):
    big = api.launch_run(_linreg(epochs=5, step_sleep_s=0.02), name="fits")
    # two CPUs a process: no slot while `fits` holds one of the two CPUs, so it waits in Ray
    monkeypatch.setenv("WORKBENCH_RAY_CPUS_PER_PROCESS", "2")
    from workbench.settings import reset_settings

    reset_settings()
    waiting = api.launch_run(_linreg(epochs=5), name="waits")
    wait_for(lambda: (api.get_run(waiting.id).phase or "").startswith("waiting in Ray"), timeout=30, what="it to wait in Ray")
    assert api.cancel_run(waiting.id) == "cancelled"
    assert wait_status(big.id, ENDED, timeout=120).status == "completed"
    time.sleep(2)  # the withdrawn actor must not start it now that the CPUs are free
    after = api.get_run(waiting.id)
    assert after.status == "cancelled" and after.started_at is None


def test_a_run_asking_more_cpus_than_are_free_waits_in_ray_as_queued_and_is_never_judged_lost(ray_home, monkeypatch):
    import ray

    from workbench.runner.ray_executor import NAMESPACE, actor_name
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_LOST_AFTER_S", "2")  # a heartbeat rule that would catch a waiting run at once
    reset_settings()
    holder = api.launch_run(_linreg(epochs=400, step_sleep_s=0.02), name="holds-a-cpu")
    wait_status(holder.id, ("running",), timeout=60)
    big = api.launch_run(_linreg(epochs=2, resources={"cpus": 2}), name="asks-for-two")  # the config's own ask
    wait_for(lambda: (api.get_run(big.id).phase or "").startswith("waiting in Ray"), timeout=30, what="it to wait in Ray")
    assert "for 2 CPU" in (api.get_run(big.id).phase or "")
    for _ in range(5):  # housekeeping passes well past lost_after_s
        assert api.housekeeping().lost == []
        time.sleep(1)
    now = api.get_run(big.id)
    assert now.status == "queued" and (now.phase or "").startswith("waiting in Ray"), (now.status, now.phase, now.error)
    ray.get_actor(actor_name(big.id, 1), namespace=NAMESPACE)  # Ray holds it (pending creation), not our queue
    assert api.get_run(holder.id).status == "running", "the CPU it waits for was taken all along"
    api.cancel_run(holder.id)
    assert wait_status(holder.id, ENDED, timeout=60).status == "cancelled"
    done = wait_status(big.id, ENDED, timeout=120)
    assert done.status == "completed", (done.status, done.error)


def test_a_run_no_node_can_hold_is_refused_at_launch_with_what_the_nodes_have(ray_home):
    with pytest.raises(api.ExecutorError, match=r"no node of the Ray cluster has the 3 CPU this run asks for \(resources: \{cpus: 3\}.*: 2 CPU\. On a cluster"):
        api.launch_run(_linreg(resources={"cpus": 3}), name="too-big")
    with pytest.raises(api.ExecutorError, match=r"1 CPU, 1 ssd this run asks for"):
        api.launch_run(_linreg(resources={"custom": {"ssd": 1}}), name="no-ssd-here")
    assert api.list_runs() == [], "a refused launch inserts no run"


def test_on_an_autoscaling_cluster_a_run_asking_more_cpus_than_the_cluster_has_waits_in_ray(ray_home, monkeypatch):
    import ray

    from workbench.runner.ray_executor import NAMESPACE, actor_name
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_RAY_AUTOSCALING", "true")  # the demand is for the autoscaler to see, in Ray's queue
    monkeypatch.setenv("WORKBENCH_LOST_AFTER_S", "2")
    reset_settings()
    run = api.launch_run(_linreg(epochs=1, resources={"cpus": 3}), name="more-than-the-cluster-has")
    wait_for(lambda: (api.get_run(run.id).phase or "").startswith("waiting in Ray"), timeout=30, what="it to wait in Ray")
    for _ in range(4):  # housekeeping passes well past lost_after_s
        assert api.housekeeping().lost == []
        time.sleep(1)
    now = api.get_run(run.id)
    assert now.status == "queued" and now.phase == "waiting in Ray's queue for 3 CPU", (now.status, now.phase, now.error)
    ray.get_actor(actor_name(run.id, 1), namespace=NAMESPACE)  # pending in Ray, for a node that has 3 CPUs
    assert api.cancel_run(run.id) == "cancelled"

    def withdrawn() -> bool | None:
        try:
            ray.get_actor(actor_name(run.id, 1), namespace=NAMESPACE)
        except ValueError:
            return True
        return None

    wait_for(withdrawn, timeout=10, what="its actor to be taken out of Ray's queue")


def test_the_local_executor_refuses_a_run_spanning_nodes(home):
    with pytest.raises(api.ExecutorError, match=r"nnodes: 2 spans 2 machines.*WORKBENCH_EXECUTOR=ray"):
        api.launch_run(_linreg(nnodes=2), name="two-machines")
    assert api.list_runs() == []
    api.launch_run(_linreg(epochs=1, resources={"cpus": 64, "custom": {"ssd": 1}}), name="resources-are-ray-only")


def test_a_killed_ray_worker_leaves_the_run_lost_within_30_s(ray_home):
    # a second run whose actor does the housekeeping passes: nobody else here looks (no UI server, no pass by hand)
    watcher = api.launch_run(_linreg(epochs=400, step_sleep_s=0.02), name="watcher")
    run = api.launch_run(_linreg(epochs=400, step_sleep_s=0.02), name="to-kill")
    wait_status(watcher.id, ("running",), timeout=60)
    running = wait_status(run.id, ("running",), timeout=60)
    wait_for(lambda: api.get_run(run.id).worker_pid, timeout=30, what="the worker's pid")
    running = api.get_run(run.id)
    actor_pid = psutil.Process(running.supervisor_pid).ppid()  # the supervisor is the Ray actor's child
    assert "ray::RunActor" in " ".join(psutil.Process(actor_pid).cmdline()), psutil.Process(actor_pid).cmdline()
    killed_at = time.time()
    os.kill(actor_pid, signal.SIGKILL)

    done = wait_status(run.id, ENDED, timeout=30)
    assert time.time() - killed_at < 30
    assert done.status == "lost", (done.status, done.error)
    # the watcher's actor runs on the same host as the dead supervisor: its pid check sees it first (Ray's own word
    # is what the two-node test below checks)
    assert "supervisor process" in (done.error or "") or "Ray actor" in (done.error or ""), done.error
    # nothing of it goes on training: the supervisor and the worker die with the Ray worker
    wait_for(lambda: not _alive(running.supervisor_pid) and not _alive(running.worker_pid), timeout=10, what="its processes to die")
    assert api.get_run(watcher.id).status == "running"
    api.cancel_run(watcher.id)
    assert wait_status(watcher.id, ENDED, timeout=60).status == "cancelled"


def test_torchrun_on_the_node_and_its_ranks_die_with_the_ray_worker(ray_home):
    run = api.launch_run(_linreg(epochs=100, step_sleep_s=0.02, nproc_per_node=2), name="ddp")
    assert any("for 2 CPU" in e.message for e in api.events(run.id) if e.kind == "submitted")
    wait_for(lambda: (api.get_run(run.id).progress_done or 0) > 20, timeout=90, what="the ranks to train")
    running = api.get_run(run.id)
    log = (api.run_dir(run.id) / "train.log").read_text()
    assert "world size 2" in log and "[rank 1]" in log
    supervisor = psutil.Process(running.supervisor_pid)
    below = supervisor.children(recursive=True)  # torchrun and its two ranks
    assert len(below) >= 3 and any("torch.distributed.run" in " ".join(p.cmdline()) for p in below)
    supervisor.parent().kill()  # the Ray worker process of the run's actor  # type: ignore[union-attr]
    wait_for(lambda: not any(_alive(p.pid) for p in [supervisor, *below]), timeout=15, what="torchrun and its ranks to die")
    assert api.housekeeping().lost == [run.id]  # what the UI server does every few seconds
    assert api.get_run(run.id).status == "lost"


def test_a_study_runs_4_trials_2_at_once_through_ray(ray_home, tmp_path):
    config = tmp_path / "linreg.yaml"
    config.write_text("task: linreg\nepochs: 3\nsteps_per_epoch: 20\ntrain_batch_size: 16\n")
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {low: 0.001, high: 0.1, log: true}\n")
    out = wb("study", "run", str(config), "--space", str(space), "--trials", "4", "--parallel", "2", "--pruner", "none", "--wait", home=ray_home, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    shown = json.loads(wb("study", "show", out.stdout.split()[1], "--json", home=ray_home).stdout)
    assert sorted(t["state"] for t in shown["trials"]) == ["complete"] * 4
    trials = [r for r in api.list_runs() if r.study_id]
    assert len(trials) == 4 and all(r.status == "completed" for r in trials)
    assert all(any(e.kind == "submitted" for e in api.events(r.id)) for r in trials), "every trial went through Ray"
    # never more than 2 at once: the starts and ends of the trials overlap at most pairwise
    spans = sorted((r.started_at, r.ended_at) for r in trials)
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 2, spans


def test_what_a_run_asks_of_ray_follows_its_resources_else_the_defaults(monkeypatch):
    from workbench.runner.ray_executor import Ask, run_resources
    from workbench.settings import get_settings, reset_settings

    monkeypatch.setenv("WORKBENCH_RAY_CPUS_PER_PROCESS", "1.5")
    reset_settings()
    settings = get_settings()
    assert run_resources({"nproc_per_node": 2}, settings, cluster_gpus=0) == Ask(cpus=3.0, gpus=0.0)
    assert run_resources({"nproc_per_node": 2, "device": "auto"}, settings, cluster_gpus=8).gpus == 2  # auto on GPUs
    assert run_resources({"nproc_per_node": 2, "device": "cuda"}, settings, cluster_gpus=0).gpus == 2
    assert run_resources({"nproc_per_node": 2, "device": "cpu"}, settings, cluster_gpus=8).gpus == 0
    config = {"nproc_per_node": 2, "device": "cuda", "nnodes": 3, "resources": {"cpus": 6, "gpus": 0.5, "custom": {"ssd": 1}}}
    ask = run_resources(config, settings, cluster_gpus=8)
    assert ask == Ask(cpus=6.0, gpus=0.5, custom={"ssd": 1.0}, nnodes=3)
    assert str(ask) == "6 CPU, 0.5 GPU, 1 ssd on each of 3 nodes"
    assert Ask(cpus=1.0, gpus=0.0).bundle() == {"CPU": 1.0}  # Ray refuses a bundle entry of 0
    assert ask.fits({"CPU": 8, "GPU": 1, "ssd": 2}) and not ask.fits({"CPU": 8, "GPU": 1})


def test_each_node_of_a_spread_run_meets_at_the_c10d_rendezvous_on_the_first():
    from workbench.runner.supervisor import torchrun_command, worker_command

    assert "--standalone" in torchrun_command("r1", 2)
    first = torchrun_command("r1", 2, nnodes=2, node_rank=0, endpoint="10.0.0.5:29400", node_ip="10.0.0.5")
    other = torchrun_command("r1", 2, nnodes=2, node_rank=1, endpoint="10.0.0.5:29400", node_ip="10.0.0.6")
    for command, rank, host in ((first, 0, 1), (other, 1, 0)):
        assert "--standalone" not in command and command[-1] == "r1"
        assert {"--nnodes=2", f"--node_rank={rank}", "--rdzv_backend=c10d", "--rdzv_endpoint=10.0.0.5:29400",
                f"--rdzv_conf=is_host={host}", "--nproc_per_node=2", "--rdzv_id=r1"} <= set(command)  # fmt: skip
    assert "--local_addr=10.0.0.6" in other
    with pytest.raises(ValueError, match="rendezvous endpoint"):
        worker_command("r1", 1, nnodes=2)  # neither the ray executor's nor the config's
    by_hand = worker_command("r1", 1, nnodes=2, rdzv_endpoint="node0:29400")  # ctr_stream's join by hand
    assert "--rdzv_endpoint=node0:29400" in by_hand and not any(a.startswith("--rdzv_conf") for a in by_hand)


def test_a_dead_actors_record_is_read_through_the_public_state_api_where_the_cluster_serves_it(monkeypatch):
    """The test clusters run no dashboard, so the cluster tests read Ray's private GCS accessor; this checks the
    public path on Ray's own ActorState record (what list_actors returns), with the call itself replaced."""
    import dataclasses

    import ray.util.state
    from ray.util.state.common import ActorState

    from workbench.runner import ray_records

    unset = {f.name: None for f in dataclasses.fields(ActorState)}
    record = ActorState(**{
        **unset, "actor_id": "cd" * 16, "class_name": "RunActor", "job_id": "01000000", "num_restarts": 0,
        "num_restarts_due_to_lineage_reconstruction": 0, "num_restarts_due_to_node_preemption": 0,
        "name": "wb-run-x-1", "state": "DEAD", "pid": 4242, "node_id": "ab" * 28,
        "death_cause": {"actor_died_error_context": {"error_message": "The actor died because its node has died.", "pid": 4242}},
    })  # fmt: skip
    asked = []
    monkeypatch.setattr(ray.util.state, "list_actors", lambda **kw: asked.append(kw) or [record])
    monkeypatch.setattr(ray_records, "_state_api", None)
    said = ray_records.death_cause(ray_records.actor_info("wb-run-x-1"))
    assert said == f"The actor died because its node has died. (node {'ab' * 6}, pid 4242)", said
    assert asked[0]["filters"] == [("name", "=", "wb-run-x-1")] and asked[0]["detail"] is True
    assert ray_records._state_api is True

    def no_dashboard(**kw):  # type: ignore[no-untyped-def]
        raise ConnectionError("no dashboard")

    monkeypatch.setattr(ray.util.state, "list_actors", no_dashboard)
    monkeypatch.setattr(ray_records, "_state_api", None)
    monkeypatch.setattr(ray_records, "_record_of_gcs", lambda info: pytest.fail("no GCS records expected"))
    import ray._private.state

    monkeypatch.setattr(ray._private.state, "actors", lambda actor_id=None: {})  # the fallback, on a cluster with none
    assert ray_records.actor_info("wb-run-x-1") is None and ray_records._state_api is False


def test_sqlite_is_refused_on_a_cluster_of_several_nodes():
    from workbench.runner.executor import ExecutorError
    from workbench.runner.ray_executor import refuse_unshared_store

    refuse_unshared_store("sqlite:////tmp/x/workbench.db", 1)  # one node: one machine's file is fine
    refuse_unshared_store("postgresql+psycopg://u@db/wb", 5)
    with pytest.raises(ExecutorError, match=r"cluster of 3 nodes.*SQLite.*WORKBENCH_DB_URL"):
        refuse_unshared_store("sqlite:////tmp/x/workbench.db", 3)


def test_without_ray_address_or_ray_the_message_says_what_to_do(home, monkeypatch):
    from workbench.runner.executor import ExecutorError, get_executor
    from workbench.settings import get_settings, reset_settings

    monkeypatch.setenv("WORKBENCH_EXECUTOR", "ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    reset_settings()
    import ray

    if not ray.is_initialized():
        with pytest.raises(ExecutorError, match="needs RAY_ADDRESS"):
            get_executor(get_settings())
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "workbench.runner.ray_executor", raising=False)
    import workbench.runner

    monkeypatch.delattr(workbench.runner, "ray_executor", raising=False)
    with pytest.raises(ExecutorError, match=r"pip install -e '\.\[ray\]'"):
        get_executor(get_settings())
    out = wb("run", "configs/recommendation/quick.yaml", "--detach", home=home)
    assert out.returncode == 2 and "needs RAY_ADDRESS" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert api.list_runs() == [], "a refused launch inserts no run"


@pytest.mark.parametrize("store_backend", ["postgresql"], indirect=True)
def test_on_two_nodes_sqlite_is_refused_and_a_dead_node_leaves_its_run_lost(ray_home, ray_head, monkeypatch, tmp_path):
    """Last in the module: it adds a node and kills it (the cluster counts it until Ray gives up on it)."""
    import ray

    from workbench.runner.executor import ExecutorError, get_executor
    from workbench.settings import get_settings, reset_settings

    assert get_executor(get_settings()).name == "ray"  # connected: one node, PostgreSQL
    node = ray_head.add_node(cpus=3)
    # the store is this test's PostgreSQL database; SQLite on the same two nodes is refused, in-process and by the CLI
    sqlite_home = tmp_path / "sqlite-home"
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", "configs/recommendation/quick.yaml", "--detach"], capture_output=True,
        text=True, cwd=ROOT, env={**{k: v for k, v in os.environ.items() if k != "WORKBENCH_DB_URL"}, "WORKBENCH_HOME": str(sqlite_home)},
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "cluster of 2 nodes" in out.stderr and "PostgreSQL" in out.stderr, out.stderr
    url = os.environ["WORKBENCH_DB_URL"]
    monkeypatch.delenv("WORKBENCH_DB_URL")
    reset_settings()
    with pytest.raises(ExecutorError, match="cluster of 2 nodes"):
        get_executor(get_settings())
    monkeypatch.setenv("WORKBENCH_DB_URL", url)
    # 3 CPUs a process: only the new node has them, so Ray places the run there
    monkeypatch.setenv("WORKBENCH_RAY_CPUS_PER_PROCESS", "3")
    monkeypatch.setenv("WORKBENCH_HOST", "ui-machine")  # judge by Ray's word and the heartbeat, not by pids
    reset_settings()
    assert get_settings().db_url, "this test runs on PostgreSQL"
    head_id = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU") == 2)
    run = api.launch_run(_linreg(epochs=400, step_sleep_s=0.02), name="on-node-2")
    wait_status(run.id, ("running",), timeout=60)
    placed = next(e.message for e in api.events(run.id) if e.kind == "starting")
    assert head_id[:12] not in placed, placed
    running = api.get_run(run.id)
    killed_at = time.time()
    ray_head.kill_node(node)

    def ended():  # type: ignore[no-untyped-def]
        api.housekeeping()
        now = api.get_run(run.id)
        return now if now.status in ENDED else None

    done = wait_for(ended, timeout=35, interval=0.5, what="the run on the dead node to be marked lost")
    took = time.time() - killed_at
    assert done.status == "lost" and took < 30, (done.status, done.error, took)
    assert "Ray actor" in (done.error or ""), done.error  # Ray's word: no pid check from here, no 30 s heartbeat yet
    wait_for(lambda: not _alive(running.supervisor_pid) and not _alive(running.worker_pid), timeout=10, what="its processes to die")
    wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 1, timeout=60, what="Ray to count one node again")
