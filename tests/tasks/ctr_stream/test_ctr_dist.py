"""ctr_stream over several ranks (gloo, CPU): each test starts real processes (tests/support/ctr_dist_rank.py) that
join one process group; the harness waits with a timeout, so a hang fails the test instead of the suite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from tests.support.local import free_port
from workbench.tasks.ctr_stream.config import CtrStreamConfig, SyntheticStream
from workbench.tasks.ctr_stream.metrics import CtrMetrics
from workbench.tasks.ctr_stream.ps import file_share, merge_table_states, owner_of, owned_shards, split_table_state
from workbench.tasks.ctr_stream.synth import generate_stream

RANK_SCRIPT = Path(__file__).resolve().parents[2] / "support" / "ctr_dist_rank.py"
DAYS = ["20190720", "20190721"]
# 2 passes a day of 2 slices (one file each): with 2 ranks, one file per rank per pass; 4 table shards, 2 per rank
SMALL = dict(start_day=DAYS[0], end_day=DAYS[1], split_interval=360, split_per_pass=2, slot_num=4, layer_sizes=[16],
             train_batch_size=64, checkpoint_per_pass=1, save_delta_frequency=1, print_freq=1, keep_ckpt=50,
             train_thread_num=1, shard_num=4, nproc_per_node=2, embedx_threshold=1.0, prefetch=True)
SYNTH = SyntheticStream(examples_per_slice=300, vocab_size=200)
TIMEOUT_S = 300  # a hang fails the test; generous because the machine is shared


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    generate_stream(root, slots=[2, 3, 4, 5], days=DAYS, split_interval=360, settings=SYNTH)
    return root


def config(stream: Path, **kw) -> dict:
    return CtrStreamConfig(**{**SMALL, "train_data_dir": str(stream), **kw}).model_dump()


def wait_all(procs: list[subprocess.Popen], logs: list, what: str) -> None:  # type: ignore[type-arg]
    """Wait for every process (TIMEOUT_S in all); on a hang kill them and fail with the end of each log."""
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        tails = "\n".join(Path(f.name).read_text()[-2000:] for f in logs)
        pytest.fail(f"the {what} did not end within {TIMEOUT_S} s (a hang):\n{tails}")
    finally:
        for f in logs:
            f.close()


def launch(tmp: Path, world: int, job: dict) -> list[dict]:
    """Run `world` ranks of `job` to the end; returns each rank's result (see ctr_dist_rank.py)."""
    out = tmp / f"out-{uuid.uuid4().hex[:6]}"
    out.mkdir(parents=True)
    job = {"run_dir": str(tmp / "run"), **job, "store": str(out / "store"), "out": str(out)}
    (out / "job.json").write_text(json.dumps(job))
    logs = [open(out / f"rank-{r}.log", "wb") for r in range(world)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the logs are read while the ranks run
    procs = [subprocess.Popen([sys.executable, str(RANK_SCRIPT), str(r), str(world), str(out / "job.json")],
                              stdout=logs[r], stderr=subprocess.STDOUT, env=env) for r in range(world)]
    wait_all(procs, logs, "ranks")
    results = []
    for r in range(world):
        path = out / f"rank-{r}.pt"
        assert path.exists(), (out / f"rank-{r}.log").read_text()[-3000:]
        results.append({**torch.load(path, weights_only=False), "log": (out / f"rank-{r}.log").read_text()})
    return results


def series(result: dict, key: str) -> list[tuple[int, float]]:
    return [(s, v) for k, s, v, _ in result["metrics"] if k == key]


def table_by_key(states: list[dict]) -> dict[str, np.ndarray]:
    """The union of shards, sorted by key, with embedx rows aligned to their keys (NaN where none)."""
    merged = merge_table_states(states)
    order = np.argsort(merged["keys"])
    embedx = np.full((merged["keys"].size, merged["embedx_w"].shape[1]), np.nan, np.float32)
    has = merged["mf_index"] >= 0
    embedx[has] = merged["embedx_w"][merged["mf_index"][has]]
    return {"keys": merged["keys"][order], "slot": merged["slot"][order], "unseen_days": merged["unseen_days"][order],
            "vals": np.stack([merged[n] for n in ("delta_score", "show", "click", "embed_w")], 1)[order],
            "embed_state": merged["embed_state"][order], "embedx_w": embedx[order]}


TEXT_RTOL = 1e-5  # model folders are text written with %g: six significant digits


def assert_same_tables(a: dict[str, np.ndarray], b: dict[str, np.ndarray], fields=None, rtol: float = 1e-6) -> None:
    assert a["keys"].size > 0 and np.array_equal(a["keys"], b["keys"])
    for name in fields or ("slot", "unseen_days", "vals", "embed_state", "embedx_w"):
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=1e-7, err_msg=name)


def assert_owned(results: list[dict], shard_num: int) -> None:
    for rank, r in enumerate(results):
        assert (owner_of(r["table"]["keys"], shard_num, len(results)) == rank).all()


# -- pure helpers -------------------------------------------------------------------------------------------------
def test_shard_rule_is_paddlerecs_block_assignment():
    keys = np.arange(20, dtype=np.uint64)
    assert owner_of(keys, 4, 2).tolist() == [0, 0, 1, 1] * 5  # shards 0,1 -> rank 0; 2,3 -> rank 1
    assert owner_of(keys, 5, 2).tolist() == [0, 0, 0, 1, 1] * 4  # ceil(5/2) = 3 shards per rank
    assert [list(owned_shards(r, 5, 2)) for r in range(2)] == [[0, 1, 2], [3, 4]]
    assert file_share(list("abcde"), 0, 2) == list("abc") and file_share(list("abcde"), 1, 2) == list("de")
    assert file_share(list("a"), 1, 2) == []


def test_shard_num_must_cover_the_processes():
    with pytest.raises(ValueError, match=r"shard_num\n.*must be at least nproc_per_node \(2\)"):
        CtrStreamConfig(nproc_per_node=2, shard_num=1)
    CtrStreamConfig(nproc_per_node=2, shard_num=2)
    with pytest.raises(ValueError, match="shard_num .1. must be at least the number of ranks .3."):
        from workbench.tasks.ctr_stream.ps import Dist

        Dist.setup(0, 3, shard_num=1)  # torchrun --nnodes can make more ranks than nproc_per_node says


def test_gloo_has_all_to_all_single():
    """The exchange relies on gloo's all_to_all_single (torch 2.13): uneven splits, one process group of one."""
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        out = torch.empty(3, dtype=torch.int64)
        dist.all_to_all_single(out, torch.arange(3), [3], [3])
        assert out.tolist() == [0, 1, 2]
    finally:
        dist.destroy_process_group()


def test_state_split_and_merge_round_trip():
    from workbench.tasks.ctr_stream.table import SparseTable

    t = SparseTable(CtrStreamConfig(embedx_threshold=1.0), seed=3)
    keys = np.arange(1, 41, dtype=np.uint64)
    t.push(keys, t.lookup(keys), np.full(40, 2, np.uint16), np.arange(40, dtype=np.float32) % 20,
           np.zeros(40, np.float32), np.ones((40, 9), np.float32))
    state = t.state_dict()
    parts = [split_table_state(state, owner_of(state["keys"], 4, 2) == r, r, 2) for r in range(2)]
    assert sum(p["keys"].size for p in parts) == 40 and parts[1]["counters"]["created_total"] == 0
    assert_same_tables(table_by_key([state]), table_by_key(parts))


# -- real ranks ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_rank_run(stream, tmp_path_factory) -> tuple[Path, list[dict]]:
    tmp = tmp_path_factory.mktemp("two")
    cfg = config(stream, dump_fields=["click", "predict"], dump_phase="infer")
    return tmp, launch(tmp, 2, {"mode": "run", "config": cfg})


def test_two_ranks_log_global_metrics_on_rank_0_only(two_rank_run):
    tmp, (r0, r1) = two_rank_run
    assert r0["error"] is None and r1["error"] is None, (r0["log"][-3000:], r1["log"][-3000:])
    assert r1["metrics"] == [] and r1["checkpoints"] == []  # only rank 0 records
    assert len(series(r0, "infer/auc")) == 4 and all(v == 600 for _, v in series(r0, "pass/examples"))
    # the logged metrics are the single-process formulas over both ranks' statistics ...
    for phase, offset in (("infer", 0), ("train", 1)):
        for i, logged in enumerate(zip(*(series(r0, f"{phase}/{k}") for k in ("auc", "copc", "rmse", "mae")))):
            m = CtrMetrics.from_state(r0["local_stats"][2 * i + offset])
            m.merge(CtrMetrics.from_state(r1["local_stats"][2 * i + offset]))
            want = m.compute(phase)
            assert [v for _, v in logged] == pytest.approx([want[f"{phase}/{k}"] for k in ("auc", "copc", "rmse", "mae")],
                                                          rel=1e-9)
    # ... which are those of all the predictions the ranks made (their dumps; %g text, so COPC/RMSE/MAE to 1e-5)
    for (_, copc), (_, rmse), (_, mae), (_, day), (_, pass_id) in zip(*(
            series(r0, k) for k in ("infer/copc", "infer/rmse", "infer/mae", "day", "pass"))):
        folder = tmp / "run" / "dump" / str(int(day)) / str(int(pass_id))
        lines = [line.split("\t") for r in (0, 1) for line in (folder / f"part-0000{r}").read_text().splitlines()]
        assert len(lines) == 600
        m = CtrMetrics()
        m.add(np.array([float(f[2].split(":")[2]) for f in lines]), np.array([float(f[1].split(":")[2]) for f in lines]))
        want = m.compute("infer")
        assert (copc, rmse, mae) == pytest.approx((want["infer/copc"], want["infer/rmse"], want["infer/mae"]), rel=1e-5)
    # table rows summed over the shards; every rank holds only the keys it owns
    assert series(r0, "table/rows_after_shrink")[-1][1] == r0["table"]["keys"].size + r1["table"]["keys"].size
    assert_owned([r0, r1], 4)
    assert "rank 1 of 2" in r1["log"]


def test_without_all_to_all_the_exchange_goes_through_all_gather(two_rank_run, stream, tmp_path):
    _, (r0, _) = two_rank_run
    fallback = launch(tmp_path, 2, {"mode": "run", "config": config(stream), "no_all_to_all": True})
    assert all(r["error"] is None for r in fallback), fallback[0]["log"][-3000:]
    assert "lacks all_to_all_single" in fallback[0]["log"] and "through all_gather" in fallback[0]["log"]
    assert series(fallback[0], "infer/auc") == series(r0, "infer/auc")  # the same bytes reach the same ranks
    assert series(fallback[0], "table/rows") == series(r0, "table/rows")


def test_each_rank_writes_its_shards_part_files(two_rank_run):
    tmp, (r0, r1) = two_rank_run
    folder = tmp / "run" / "model" / "20190722" / "0" / "000"  # the batch model after day 2 (every feature)
    parts = sorted(p.name for p in folder.iterdir())
    assert parts == [f"part-000-0000{s}" for s in range(4)]
    keys = []
    for s in range(4):
        ks = np.array([int(line.split(" ")[0]) for line in (folder / f"part-000-0000{s}").read_text().splitlines()],
                      dtype=np.uint64)
        assert ks.size and (ks % np.uint64(4) == s).all()
        keys.append(ks)
    assert np.array_equal(np.sort(np.concatenate(keys)), table_by_key([r0["table"], r1["table"]])["keys"])
    meta = json.loads((folder.parent / "meta.json").read_text())
    assert meta["features"] == r0["table"]["keys"].size + r1["table"]["keys"].size
    donefile = (tmp / "run" / "model" / "donefile.txt").read_text().splitlines()
    assert len(donefile) == len(set(donefile))  # rank 0 alone announces


def test_saves_load_with_another_rank_count(two_rank_run, stream, tmp_path):
    tmp, (r0, r1) = two_rank_run
    both = table_by_key([r0["table"], r1["table"]])
    # 2 -> 1: the resumable state of the end of the stream, and the batch model folder
    state = sorted((tmp / "run" / "checkpoints").glob("checkpoint-*.pt"))[-1]
    (one,) = launch(tmp_path, 1, {"mode": "load", "config": config(stream, nproc_per_node=1), "state": str(state)})
    assert one["error"] is None, one["log"][-3000:]
    assert_same_tables(table_by_key([one["table"]]), both)
    batch_model = tmp / "run" / "model" / "20190722" / "0"
    (one,) = launch(tmp_path, 1, {"mode": "load", "config": config(stream, nproc_per_node=1,
                                                                     init_model_path=str(batch_model))})
    # the batch model was written before its save aged every key by a day: all but unseen_days are the same
    assert_same_tables(table_by_key([one["table"]]), both, fields=("slot", "vals", "embed_state", "embedx_w"),
                       rtol=TEXT_RTOL)
    # 1 -> 2: a one-rank run's state and batch model, loaded by two ranks
    run1 = tmp_path / "one"
    (single,) = launch(run1, 1, {"mode": "run", "config": config(stream, nproc_per_node=1), "run_dir": str(run1)})
    assert single["error"] is None, single["log"][-3000:]
    state1 = sorted((run1 / "checkpoints").glob("checkpoint-*.pt"))[-1]
    loaded = launch(tmp_path, 2, {"mode": "load", "config": config(stream), "state": str(state1)})
    assert_owned(loaded, 4)
    assert_same_tables(table_by_key([r["table"] for r in loaded]), table_by_key([single["table"]]))
    loaded = launch(tmp_path, 2, {"mode": "load", "config": config(
        stream, init_model_path=str(run1 / "model" / "20190722" / "0"))})
    assert_same_tables(table_by_key([r["table"] for r in loaded]), table_by_key([single["table"]]),
                       fields=("slot", "vals", "embed_state", "embedx_w"), rtol=TEXT_RTOL)


def test_rank_0_alone_waits_for_a_late_slice_and_the_others_follow(stream, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(stream, live)
    late = live / DAYS[1] / "0600" / "data.done"
    late.unlink()  # day 2's first pass cannot start until it appears
    cfg = config(live, data_donefile="data.done", data_sleep_second=0.05)
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(launch, tmp_path, 2, {"mode": "run", "config": cfg})
        waiting = "pass 1 of 20190721: waiting for data.done"

        def logs() -> list[str]:
            return [p.read_text() for p in sorted(tmp_path.glob("out-*/rank-*.log"))]

        deadline = time.monotonic() + TIMEOUT_S
        while not any(waiting in text for text in logs()) and not job.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        late.write_text("")
        r0, r1 = job.result()
    assert r0["error"] is None and r1["error"] is None, r0["log"][-3000:]
    assert waiting in r0["log"] and waiting not in r1["log"]  # only rank 0 polls the folders
    waits = dict(zip((int(v) for _, v in series(r0, "pass/global")), (v for _, v in series(r0, "pass/wait_seconds"))))
    assert waits[3] > 0 and len(waits) == 4


def test_a_failing_rank_fails_the_run_with_its_error(stream, tmp_path):
    r0, r1 = launch(tmp_path, 2, {"mode": "run", "config": config(stream), "fail_rank": 1, "fail_at_pass": 2})
    assert r1["error"] == "ValueError: boom on rank 1"
    assert r0["error"] == "PeerFailed: rank 1 failed: ValueError: boom on rank 1", r0["log"][-3000:]


def test_cancel_checkpoints_all_shards_and_resumes_with_one_rank(stream, tmp_path):
    cfg = config(stream)
    r0, r1 = launch(tmp_path, 2, {"mode": "run", "config": cfg, "stop_rank": 1, "stop_after_steps": 13})
    assert r0["error"] is None and r1["error"] is None, r0["log"][-3000:]
    states = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*.pt"))
    saved = torch.load(states[-1], weights_only=True)["state"]
    # 2 ranks make 2 updates a step, 5 steps a pass: the stop after update 13 cuts pass 2
    assert saved["progress"]["partial"]["pass_id"] == 2 and saved["world_size"] == 2
    from workbench.tasks.ctr_stream.trainer import tensors_to_arrays

    assert_same_tables(table_by_key([tensors_to_arrays(saved["table"])]), table_by_key([r0["table"], r1["table"]]))
    (one,) = launch(tmp_path, 1, {"mode": "run", "config": {**cfg, "nproc_per_node": 1}, "resume": str(states[-1])})
    assert one["error"] is None, one["log"][-3000:]
    passes = [int(v) for _, v in series(one, "pass/global")]
    assert passes == [2, 3, 4]  # the cut pass finished, then the rest
    assert "resuming training at step" in one["log"]


def launch_nodes(tmp: Path, nnodes: int, job: dict) -> list[dict]:
    """Run `job` as `nnodes` torchrun launches of one process each, joined by a c10d rendezvous on this machine:
    the command docs/ctr_stream.md gives for each machine of a multi-node run (`--node_rank` is ignored by c10d:
    torchrun assigns the ranks). Returns each rank's result, by rank."""
    out = tmp / f"nodes-{uuid.uuid4().hex[:6]}"
    out.mkdir(parents=True)
    job = {"run_dir": str(tmp / "run"), **job, "store": str(out / "store"), "out": str(out)}
    (out / "job.json").write_text(json.dumps(job))
    endpoint, run_id = f"127.0.0.1:{free_port()}", f"ctr-{uuid.uuid4().hex[:6]}"  # the same for every node
    logs = [open(out / f"node-{n}.log", "wb") for n in range(nnodes)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", "--nproc_per_node=1",
         "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", f"--rdzv_id={run_id}",
         f"--node_rank={n}", str(RANK_SCRIPT), "env", "env", str(out / "job.json")],
        stdout=logs[n], stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}) for n in range(nnodes)]
    wait_all(procs, logs, "nodes")
    node_logs = "\n".join((out / f"node-{n}.log").read_text()[-3000:] for n in range(nnodes))
    results = []
    for r in range(nnodes):
        path = out / f"rank-{r}.pt"
        assert path.exists(), node_logs
        results.append({**torch.load(path, weights_only=False), "log": node_logs})
    return results


def test_two_nodes_over_c10d_train_as_two_processes_of_one_node(two_rank_run, stream, tmp_path):
    """torchrun --nnodes 2 --nproc_per_node 1 over a c10d rendezvous (two launches, as on two machines) gives the
    run that two processes of one node give: the ranks' roles depend on the rank alone."""
    _, (r0, r1) = two_rank_run
    n0, n1 = launch_nodes(tmp_path, 2, {"mode": "run", "config": config(stream, nproc_per_node=1, nnodes=2,
                                                                         rdzv_endpoint="127.0.0.1:29400")})
    assert n0["error"] is None and n1["error"] is None, n0["log"]
    assert n1["metrics"] == [] and "rank 1 of 2" in n0["log"]
    for key in ("infer/auc", "train/auc", "train/copc", "table/rows", "pass/examples"):
        assert series(n0, key) == series(r0, key), key
    assert_owned([n0, n1], 4)
    assert_same_tables(table_by_key([n0["table"], n1["table"]]), table_by_key([r0["table"], r1["table"]]))


def test_a_hung_rank_fails_the_others_after_collective_timeout_s(stream, tmp_path):
    cfg = config(stream, collective_timeout_s=3, data_sleep_second=0.05)
    r0, r1 = launch(tmp_path, 2, {"mode": "run", "config": cfg, "world": 2, "hang_rank": 1, "hang_at_pass": 2,
                                  "hang_s": 20})
    assert r0["error"] is not None and r0["error"].startswith("PeerFailed: no answer from another rank within "
                                                              "collective_timeout_s (3 s)"), r0["log"][-3000:]
    (woke_file,) = tmp_path.glob("out-*/hang-woke.json")
    woke = json.loads(woke_file.read_text())
    assert woke["others_done"]  # rank 0 had failed and ended before the hung rank woke up


def test_multi_node_settings_are_checked():
    with pytest.raises(ValueError, match=r"rdzv_endpoint\n.*host:port"):
        CtrStreamConfig(nnodes=2, shard_num=2, rdzv_endpoint="node0")
    CtrStreamConfig(nnodes=2, shard_num=2)  # no endpoint: the ray executor picks one; the local one refuses the run
    with pytest.raises(ValueError, match=r"nnodes x nproc_per_node \(2 x 2 = 4\)"):
        CtrStreamConfig(nnodes=2, nproc_per_node=2, shard_num=3, rdzv_endpoint="node0:29400")
    with pytest.raises(ValueError, match=r"collective_timeout_s\n.*twice data_sleep_second"):
        CtrStreamConfig(collective_timeout_s=15, data_sleep_second=10)
    CtrStreamConfig(nnodes=2, nproc_per_node=2, shard_num=4, rdzv_endpoint="node0:29400")


def test_the_runner_starts_a_multi_node_run_under_c10d_and_prints_what_other_nodes_run():
    from workbench.runner.supervisor import multinode_join_command, worker_command

    command = worker_command("r1", 2, nnodes=3, rdzv_endpoint="node0:29400")
    for arg in ("--nnodes=3", "--nproc_per_node=2", "--rdzv_backend=c10d", "--rdzv_endpoint=node0:29400",
                "--rdzv_id=r1"):
        assert arg in command and arg in multinode_join_command("r1", 2, 3, "node0:29400")
    assert "--standalone" not in command and "--standalone" in worker_command("r1", 2)


# -- through the runner: torchrun, the worker, the store ------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_through_the_runner_record_once(home, stream):
    from tests.support.waiting import wait_status
    from workbench import api

    run = api.launch_run(CtrStreamConfig(**{**SMALL, "train_data_dir": str(stream)}))
    done = wait_status(run.id, ("completed", "failed", "lost"), timeout=TIMEOUT_S)
    assert done.status == "completed", (done.error, done.traceback)
    log = (api.run_dir(run.id) / "train.log").read_text()
    assert "[rank 1]" in log and "rank 1 of 2" in log
    assert api.series(run.id, "infer/auc").total_points == 4  # rank 0 alone records: one series, not two
    kinds = [c.kind for c in api.checkpoints(run.id)]
    assert kinds.count("batch") == 2 and kinds.count("base") == 2  # one row per model folder


@pytest.mark.slow
def test_a_rank_that_fails_fails_the_run_with_its_error(home, stream, tmp_path):
    import shutil

    from tests.support.waiting import wait_status
    from workbench import api

    broken = tmp_path / "stream"
    shutil.copytree(stream, broken)
    (broken / DAYS[0] / "1800" / "part-00000").write_text("not a slot line\n" * 50)  # rank 1's file of pass 2
    run = api.launch_run(CtrStreamConfig(**{**SMALL, "train_data_dir": str(broken)}))
    done = wait_status(run.id, ("completed", "failed", "lost"), timeout=TIMEOUT_S)
    assert done.status == "failed"
    assert done.error.startswith("PeerFailed: rank 1 failed: DataError: pass 2 of 20190720"), done.error


@pytest.mark.slow
def test_a_two_node_run_through_the_runner_and_the_join_command(home, stream, tmp_path):
    """The runner starts its node of an nnodes=2 run; the second node joins with the command docs/ctr_stream.md
    gives (multinode_join_command), here a second torchrun on this machine sharing the store and the run folder."""
    from tests.support.waiting import wait_status
    from workbench import api
    from workbench.runner.supervisor import multinode_join_command

    endpoint = f"127.0.0.1:{free_port()}"
    run = api.launch_run(CtrStreamConfig(**{**SMALL, "train_data_dir": str(stream), "nproc_per_node": 1, "nnodes": 2,
                                            "rdzv_endpoint": endpoint}))
    join = multinode_join_command(run.id, 1, 2, endpoint)
    assert join[0] == "torchrun"
    with open(tmp_path / "node-1.log", "wb") as log:
        node = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *join[1:]], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            done = wait_status(run.id, ("completed", "failed", "lost"), timeout=TIMEOUT_S)
            node.wait(timeout=60)
        finally:
            if node.poll() is None:
                node.kill()
    joined = (tmp_path / "node-1.log").read_text()
    assert done.status == "completed", (done.error, done.traceback, joined[-3000:])
    assert node.returncode == 0, joined[-3000:]
    logs = (api.run_dir(run.id) / "train.log").read_text() + joined
    assert "[rank 0]" in logs and "[rank 1]" in logs and "rank 1 of 2" in logs
    assert api.series(run.id, "infer/auc").total_points == 4  # one series, recorded by rank 0 wherever it ran
