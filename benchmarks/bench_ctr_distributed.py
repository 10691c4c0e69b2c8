"""ctr_stream on 1 rank and on 2 ranks (gloo, CPU): the same synthetic stream, quality, table, speed, traffic.

    .venv/bin/python benchmarks/bench_ctr_distributed.py [--examples-per-slice 2000] [--days 2]

Each configuration runs the real `run(cfg, ctx)` in fresh processes (one per rank, joined through a file store,
as torchrun's workers are), one after the other, on the same generated stream:
- 1 rank, then 2 ranks, each process with 1 torch thread (--threads-one-rank gives the single rank more; on a
  shared 2-core machine a second intra-op thread mostly spins);
- per pass: infer AUC (before training on it, so it measures generalisation), table rows summed over the shards;
- examples/s (global impressions / wall seconds of the slowest rank) and per CPU second (all ranks' CPU time),
  and the scaling ratio 2 ranks / 1 rank of each;
- bytes exchanged per impression: the sparse all-to-all payload (keys out, pulled values back, pushes out) that
  left each rank for another, and the dense gradients' all_gather (each rank's gradients to every other rank).
Target: 2 ranks' day-2 infer AUC within 0.003 of 1 rank's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rank_main(rank: int, world: int, job_path: str) -> None:
    """One rank: join the group, run the stream, write what the parent reports."""
    import torch.distributed as dist

    from workbench.runner.context import MemoryBackend, RunContext
    from workbench.tasks.ctr_stream.config import CtrStreamConfig
    from workbench.tasks.ctr_stream.train import run

    job = json.loads(Path(job_path).read_text())
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{job['store']}", rank=rank, world_size=world)
    cfg = CtrStreamConfig.model_validate(job["config"])
    from workbench.tasks.ctr_stream.model import build_dense_optimizer, build_model

    build_dense_optimizer(cfg, build_model(cfg))  # one-time lazy imports (~5 s here) stay out of the clocks
    backend = MemoryBackend()
    ctx = RunContext(run_id="bench", run_dir=Path(job["run_dir"]), backend=backend, monitor=("infer/auc", "max"),
                     keep_ckpt=3, rank=rank, world_size=world)
    t0, c0 = time.perf_counter(), time.process_time()
    run(cfg, ctx)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ctx.close()
    out = {"wall": wall, "cpu": cpu, "metrics": [(k, s, v) for k, s, v, _ in backend.metrics]}
    Path(job["out"], f"rank-{rank}.json").write_text(json.dumps(out))


def launch(work: Path, world: int, config: dict) -> list[dict]:
    out = work / f"world{world}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    job = {"config": config, "run_dir": str(out / "run"), "store": str(out / "store"), "out": str(out)}
    (out / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "WORKBENCH_CPU_THREADS": str(config["train_thread_num"])}
    procs = [subprocess.Popen([sys.executable, __file__, "--rank", str(r), "--world", str(world), "--job",
                               str(out / "job.json")], env=env) for r in range(world)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"{world} rank(s): exit codes {codes}")
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(world)]


def summary(results: list[dict]) -> dict:
    metrics = results[0]["metrics"]  # rank 0 logs the global values

    def by_pass(key: str) -> list[float]:
        return [v for k, _, v in metrics if k == key]

    examples = sum(by_pass("pass/examples"))
    last = {k: v for k, _, v in metrics}
    return {
        "infer_auc": by_pass("infer/auc"), "rows": by_pass("table/rows"), "day_auc": by_pass("infer/day_auc"),
        "examples": examples, "wall": max(r["wall"] for r in results), "cpu": sum(r["cpu"] for r in results),
        "sparse_bytes": last.get("pass/sparse_bytes_total", 0.0), "dense_bytes": last.get("pass/dense_gather_bytes_total", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples-per-slice", type=int, default=2000)
    parser.add_argument("--slot-num", type=int, default=16)
    parser.add_argument("--threads-one-rank", type=int, default=1, help="torch threads of the 1-rank run")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and run folders")
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--world", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        rank_main(args.rank, args.world, args.job)
        return

    from workbench.tasks.ctr_stream.config import CtrStreamConfig, SyntheticStream
    from workbench.tasks.ctr_stream.synth import generate_stream

    work = Path(tempfile.mkdtemp(prefix="bench_ctr_distributed_"))
    days = ["20190720", "20190721"]
    settings = SyntheticStream(examples_per_slice=args.examples_per_slice)
    generate_stream(work / "data", slots=list(range(2, args.slot_num + 2)), days=days, split_interval=60,
                    settings=settings)
    base = dict(train_data_dir=str(work / "data"), start_day=days[0], end_day=days[-1], split_interval=60,
                split_per_pass=4, slot_num=args.slot_num, checkpoint_per_pass=1000, save_delta_frequency=1000,
                shard_num=2)
    one = summary(launch(work, 1, CtrStreamConfig(**base, nproc_per_node=1,
                                                    train_thread_num=args.threads_one_rank).model_dump()))
    two = summary(launch(work, 2, CtrStreamConfig(**base, nproc_per_node=2, train_thread_num=1).model_dump()))

    print(f"stream: {len(days)} days x 24 hourly slices x {args.examples_per_slice} impressions, {args.slot_num} slots, "
          f"6 passes a day; 1 rank x {args.threads_one_rank} torch thread(s) vs 2 ranks x 1 thread (gloo), "
          f"{os.cpu_count()} cores")
    print("pass  infer AUC 1 rank  2 ranks   diff    table rows 1 rank  2 ranks")
    for i, (a1, a2, n1, n2) in enumerate(zip(one["infer_auc"], two["infer_auc"], one["rows"], two["rows"])):
        print(f"{i + 1:4d}  {a1:15.4f}  {a2:7.4f}  {a2 - a1:+7.4f}  {n1:16.0f}  {n2:7.0f}")
    for d, (a1, a2) in enumerate(zip(one["day_auc"], two["day_auc"])):
        print(f"day {d + 1} infer AUC: 1 rank {a1:.4f}, 2 ranks {a2:.4f}, diff {a2 - a1:+.4f}"
              + (" (target: within 0.003)" if d == 1 else ""))
    for name, s in (("1 rank ", one), ("2 ranks", two)):
        print(f"{name}: {s['examples']:.0f} impressions in {s['wall']:.1f} s wall = {s['examples'] / s['wall']:.0f}/s; "
              f"{s['cpu']:.1f} CPU s = {s['examples'] / s['cpu']:.0f}/CPU s")
    print(f"scaling 2 ranks / 1 rank: {(two['examples'] / two['wall']) / (one['examples'] / one['wall']):.2f}x wall, "
          f"{(two['examples'] / two['cpu']) / (one['examples'] / one['cpu']):.2f}x per CPU second")
    print(f"bytes exchanged per impression (2 ranks, sent by all ranks): sparse all-to-all "
          f"{two['sparse_bytes'] / two['examples']:.0f} B, dense gradients' all_gather {two['dense_bytes'] / two['examples']:.0f} B")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
