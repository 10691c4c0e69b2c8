"""Workbench overhead: a preset trained through `workbench run --wait` against the same training function called
bare (`spec.run(cfg, RunContext.local(...))` in a fresh Python process), side by side, alternating, same machine.

Both sides pay the interpreter start and `import torch`; the workbench side adds the store, the supervisor, the
worker start-up, metric flushing and checkpoint rows. Target (issue 2): at most 1.05x.

    .venv/bin/python benchmarks/bench_overhead.py configs/recommendation/quick.yaml [--repeats 2] [--set epochs=30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARE = """
import sys, tempfile
from workbench.config.io import load_config_file
from workbench.runner.context import RunContext
from workbench.tasks import TASKS
cfg = load_config_file(sys.argv[1], sys.argv[2:])
spec = TASKS[cfg.task]
ctx = RunContext.local(tempfile.mkdtemp(), monitor=spec.monitor(cfg), keep_ckpt=cfg.keep_ckpt)
spec.run(cfg, ctx)
ctx.close()
"""


def bare(config: str, overrides: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", BARE, config, *overrides], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def through_workbench(config: str, overrides: list[str]) -> float:
    home = tempfile.mkdtemp()
    env = {**os.environ, "WORKBENCH_HOME": home}
    t0 = time.perf_counter()
    sets = [arg for o in overrides for arg in ("--set", o)]
    subprocess.run([str(Path(sys.executable).with_name("workbench")), "run", config, *sets, "--wait"], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="key=value override applied to both sides")
    args = ap.parse_args()
    bare_s, wb_s = [], []
    for _ in range(args.repeats):  # alternate so drift on a shared machine hits both sides alike
        bare_s.append(bare(args.config, args.set))
        wb_s.append(through_workbench(args.config, args.set))
    b, w = statistics.median(bare_s), statistics.median(wb_s)
    label = args.config + "".join(f" --set {o}" for o in args.set)
    print(f"{label}: bare {b:.1f} s (runs {', '.join(f'{x:.1f}' for x in bare_s)}), "
          f"workbench run --wait {w:.1f} s (runs {', '.join(f'{x:.1f}' for x in wb_s)}) -> {w / b:.3f}x (target <= 1.05x)")


if __name__ == "__main__":
    main()
