"""Training step through the task's loop (`run(cfg, ctx)`: LR schedule, logging, progress, cancel checks) against a
bare loop of the same U-Net on the same batches. Target: at most 1.05x.

Both read the same process_data cache in the same sampler order (same chunks per batch; the random crop offsets
differ, which changes no cost), from the same freshly seeded U-Net and optimizer. The task's step
time comes from its own train/samples_per_s metric (evaluation and checkpoint saving excluded, as they are from
the bare loop). Both are timed in windows of print_freq (10) steps and each side's fastest window counts: the
development machine is shared, and other jobs' bursts inflate any mean, while the fastest window is the cost of
the code itself. Task and bare runs alternate; the ratio of the best windows over all repeats is reported.

    .venv/bin/python benchmarks/bench_spleeter_overhead.py [--steps 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from workbench.config.io import load_config_file
from workbench.runner.context import RunContext
from workbench.tasks.spleeter import MONITOR
from workbench.tasks.spleeter.config import SpleeterConfig
from workbench.tasks.spleeter.data import CachedChunks, EpochSampler, build_cache, prepare_songs
from workbench.tasks.spleeter.train import _loss, _setup_model, _setup_optimizer, run

ROOT = Path(__file__).resolve().parents[1]


def task_seconds_per_step(cfg: SpleeterConfig) -> float:
    with tempfile.TemporaryDirectory(prefix="spl-overhead-") as run_dir:  # ~300 MB of checkpoints per run
        ctx = RunContext.local(Path(run_dir), monitor=MONITOR)
        run(cfg, ctx)
        ctx.close()
    rates = [v for _, v in ctx.backend.series("train/samples_per_s")][1:]  # drop the warm-up window
    return cfg.train_batch_size / max(rates)


def bare_seconds_per_step(cfg: SpleeterConfig, folder: Path, steps: int) -> float:
    torch.manual_seed(cfg.seed)
    dataset = CachedChunks(folder, cfg.T)
    sampler = EpochSampler(len(dataset), cfg.seed)
    model, _ = _setup_model(cfg, torch.device("cpu"))
    opt = _setup_optimizer(cfg, model)
    times, done, epoch, start = [], 0, 0, time.perf_counter()
    while done < steps:
        sampler.set_epoch(epoch)
        epoch += 1
        for batch in DataLoader(dataset, batch_size=cfg.train_batch_size, sampler=sampler):
            loss = _loss(cfg, model(batch[:, 0]), batch[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            done += 1
            if done % cfg.print_freq == 0:
                times.append((time.perf_counter() - start) / cfg.print_freq)
                start = time.perf_counter()
            if done == steps:
                break
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "spleeter" / "quick.yaml"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    base = load_config_file(args.config, [f"cache_dir={ROOT / '.bench' / 'spleeter-cache'}", "mode=process_data"])
    songs, _, _ = prepare_songs(base, Path(base.cache_dir), lambda d, n: None)
    folder, _ = build_cache(songs, base, Path(base.cache_dir), lambda d, n: None)
    per_epoch = -(-len(songs) * base.n_chunks_per_song // base.train_batch_size)
    epochs = -(-args.steps // per_epoch)
    cfg = base.model_copy(update={"epochs": epochs, "eval_step": epochs, "print_freq": 10})
    steps = epochs * per_epoch
    print(f"{steps} steps of batch {cfg.train_batch_size} ({cfg.F}x{cfg.T} bins x frames), {args.repeats} repeats")
    tasks, bares = [], []
    for i in range(args.repeats):
        tasks.append(task_seconds_per_step(cfg))
        bares.append(bare_seconds_per_step(cfg, folder, steps))
        print(f"  repeat {i + 1}: task loop {tasks[-1] * 1000:7.1f} ms/step   bare loop {bares[-1] * 1000:7.1f} ms/step",
              flush=True)
    ratio = min(tasks) / min(bares)
    print(f"best windows: task {min(tasks) * 1000:.1f} ms/step, bare {min(bares) * 1000:.1f} ms/step; "
          f"ratio task/bare {ratio:.3f}x (target <= 1.05x); median of per-repeat ratios "
          f"{statistics.median(t / b for t, b in zip(tasks, bares)):.3f}x")


if __name__ == "__main__":
    main()
