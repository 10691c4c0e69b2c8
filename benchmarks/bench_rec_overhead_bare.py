"""Workbench overhead, bare side: train a recommendation preset by calling `run(cfg, ctx)` directly.

The other side of the comparison (the same preset through `workbench run --wait`) is measured by the platform's
benchmark; this file gives the bare number: wall time of a fresh process that imports torch, loads the config and
trains, with metrics going to memory instead of the store.

    .venv/bin/python benchmarks/bench_rec_overhead_bare.py [configs/recommendation/quick.yaml] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

PROCESS_START = time.perf_counter()  # before torch is imported, like a worker process


def run_bare(config_path: str | Path, overrides: list[str] | None = None) -> dict[str, float]:
    """Train the preset in this process; returns wall seconds (since process start and for run() alone) and
    the final test metrics."""
    from workbench.config.io import load_config_file
    from workbench.runner.context import MemoryBackend, RunContext
    from workbench.tasks.recommendation.train import run

    cfg = load_config_file(config_path, overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        ctx = RunContext.local(run_dir, monitor=(cfg.monitor_key, "max"))
        start = time.perf_counter()
        run(cfg, ctx)
        ctx.close()
        run_s = time.perf_counter() - start
        backend: MemoryBackend = ctx.backend  # type: ignore[assignment]
        test = {key: value for key, _, value, _ in backend.metrics if key.startswith("test/")}
    return {"run_s": run_s, "process_s": time.perf_counter() - PROCESS_START, **test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/recommendation/quick.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    result = run_bare(args.config, args.overrides)
    print(f"bare run of {args.config}: run() {result['run_s']:.2f} s, whole process {result['process_s']:.2f} s")
    for key in ("test/recall@20", "test/mrr@20"):
        if key in result:
            print(f"  {key} = {result[key]:.4f}")


if __name__ == "__main__":
    main()
