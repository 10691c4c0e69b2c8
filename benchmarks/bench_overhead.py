"""Workbench overhead: a preset trained through `workbench run --wait` against the same training function called
bare (`spec.run(cfg, RunContext.local(...))` in a fresh Python process), side by side, alternating, same machine.

Both sides pay the interpreter start and `import torch`; the workbench side adds the CLI, the store, the supervisor,
the worker start-up, metric flushing and checkpoint rows. Target (issue 2): at most 1.05x.

Two ratios are printed. "end to end": until the command returns, which is what a user waits for; `--wait` returns
when the run is recorded completed, while the bare process still has its interpreter teardown ahead (~0.5-1 s with
torch loaded; the worker pays it too, after the run is recorded). "until trained": until the training function has
returned (bare: a time stamp printed right after it; workbench: the run's `ended_at`), which leaves teardown out of
both sides.

    .venv/bin/python benchmarks/bench_overhead.py configs/recommendation/quick.yaml [--repeats 7] [--set epochs=30]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
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
import time
print(f"TRAINED {time.time()!r}", flush=True)
"""


def bare(config: str, overrides: list[str]) -> tuple[float, float]:
    """(seconds until the process ended, seconds until training returned)."""
    t0_wall, t0 = time.time(), time.perf_counter()
    out = subprocess.run([sys.executable, "-c", BARE, config, *overrides], check=True, cwd=ROOT, capture_output=True, text=True)
    total = time.perf_counter() - t0
    trained = next(float(line.split()[1]) for line in reversed(out.stdout.splitlines()) if line.startswith("TRAINED "))
    return total, trained - t0_wall


def through_workbench(config: str, overrides: list[str]) -> tuple[float, float]:
    """(seconds until `workbench run --wait` returned, seconds until the run's ended_at)."""
    home = tempfile.mkdtemp()
    env = {**os.environ, "WORKBENCH_HOME": home}
    t0_wall, t0 = time.time(), time.perf_counter()
    sets = [arg for o in overrides for arg in ("--set", o)]
    subprocess.run([str(Path(sys.executable).with_name("workbench")), "run", config, *sets, "--wait"], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total = time.perf_counter() - t0
    with sqlite3.connect(Path(home) / "workbench.db") as db:
        (ended_at,) = db.execute("select ended_at from run").fetchone()
    return total, ended_at - t0_wall


def _runs(xs: list[float]) -> str:
    return ", ".join(f"{x:.1f}" for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--set", action="append", default=[], help="key=value override applied to both sides")
    args = ap.parse_args()
    bare_s: list[tuple[float, float]] = []
    wb_s: list[tuple[float, float]] = []
    for _ in range(args.repeats):  # alternate so drift on a shared machine hits both sides alike
        bare_s.append(bare(args.config, args.set))
        wb_s.append(through_workbench(args.config, args.set))
    label = args.config + "".join(f" --set {o}" for o in args.set)
    print(f"{label}: {args.repeats} pairs, bare and workbench alternating")
    for i, what in enumerate(("end to end", "until trained")):
        b = [x[i] for x in bare_s]
        w = [x[i] for x in wb_s]
        # the ratio of each pair (run back to back) cancels slow drift of a shared machine; report their median
        ratios = [wi / bi for wi, bi in zip(w, b)]
        target = " (target <= 1.05x)" if i == 0 else ""
        print(f"  {what:13s}: bare median {statistics.median(b):.2f} s (runs {_runs(b)}), workbench median "
              f"{statistics.median(w):.2f} s (runs {_runs(w)}); pair ratios {', '.join(f'{r:.3f}' for r in ratios)} "
              f"-> median {statistics.median(ratios):.3f}x{target}")


if __name__ == "__main__":
    main()
