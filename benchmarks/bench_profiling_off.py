"""What `profiling` costs: nothing measurable when off, and what a profiled window adds when on.

1. The hooks a loop calls with profiling off (NO_PROFILER: batches(), four phase() blocks, step()), timed alone in
   CPU time over many iterations, next to the CPU time of one real training step of the quick STAMP model.
2. A short recommendation run (STAMP, synthetic data, 3 epochs x 40 steps) with profiling off and on, alternated,
   in CPU seconds of this process (wall time is noisy on the shared machine).

    python benchmarks/bench_profiling_off.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_CPU_THREADS", "1")

import torch  # noqa: E402

from workbench.config.io import parse_config  # noqa: E402
from workbench.runner.context import RunContext  # noqa: E402
from workbench.tasks.profiling import NO_PROFILER  # noqa: E402
from workbench.tasks.recommendation.train import run  # noqa: E402

RUN = {"task": "recommendation", "epochs": 3, "steps_per_epoch": 40, "batch_size": 256, "embed_dim": 64,
       "learning_rate": 0.01, "valid_metric": "MRR@20", "print_freq": 10,
       "data": {"synthetic": {"n_items": 500, "n_sessions": 5000}}}


def hook_ns_per_step(n: int = 1_000_000) -> float:
    """CPU ns of the profiling-off hook calls of one step (the loader wrap counts once per epoch, so not here)."""
    profiler = NO_PROFILER
    start = time.process_time_ns()
    for _ in range(n):
        with profiler.phase("data"):
            pass
        with profiler.phase("forward"):
            pass
        with profiler.phase("backward"):
            pass
        with profiler.phase("optimizer"):
            pass
        profiler.step()
    return (time.process_time_ns() - start) / n


def empty_loop_ns(n: int = 1_000_000) -> float:
    start = time.process_time_ns()
    for _ in range(n):
        pass
    return (time.process_time_ns() - start) / n


def train_cpu_s(profiling: bool, root: Path, i: int) -> tuple[float, int]:
    cfg = parse_config({**RUN, "profiling": profiling, "profiling_wait": 5, "profiling_warmup": 2,
                        "profiling_active": 5})
    ctx = RunContext.local(root / f"run-{profiling}-{i}", monitor=(cfg.monitor_key, "max"))
    start = time.process_time()
    run(cfg, ctx)
    spent = time.process_time() - start
    ctx.close()
    return spent, max(s for s, _ in ctx.backend.series("train/loss"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORKBENCH_HOME"] = tmp
        root = Path(tmp)
        train_cpu_s(False, root, -1)  # builds the data cache and warms up imports
        off, on = [], []
        for i in range(args.repeats):
            off.append(train_cpu_s(False, root, i))
            on.append(train_cpu_s(True, root, i))
    steps = off[0][1]
    best_off, best_on = min(t for t, _ in off), min(t for t, _ in on)
    hooks = hook_ns_per_step() - empty_loop_ns()
    step_ns = best_off / steps * 1e9  # includes evaluation and checkpoints: an upper bound of one step
    print(f"profiling-off hooks: {hooks:.0f} ns CPU per step; a whole run's CPU per step: {step_ns / 1e6:.2f} ms "
          f"-> {hooks / step_ns:.2e} of a step")
    print(f"run of {steps} steps, CPU s (best of {args.repeats}): off {best_off:.2f}, on {best_on:.2f} "
          f"(x{best_on / best_off:.2f}); all off {[round(t, 2) for t, _ in off]}, on {[round(t, 2) for t, _ in on]}")


if __name__ == "__main__":
    main()
