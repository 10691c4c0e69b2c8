"""Workbench overhead: a preset trained through the workbench against the same training function called bare
(`spec.run(cfg, RunContext.local(...))` in a fresh Python process, metrics to memory), side by side, alternating
(back-to-back pairs, so slow drift of a shared machine hits both sides alike), same machine. Three measurements:

end-to-end (issue 2, target <= 1.05x): `workbench run --wait` until the command returns, against the bare process
  until it ends. Both pay the interpreter start and `import torch`; the workbench side adds the CLI, the store, the
  supervisor, the worker start-up, metric flushing and checkpoint rows. A second ratio, "until trained", stops both
  clocks when training returned (bare: a time stamp printed right after it; workbench: the run's `ended_at`), which
  leaves interpreter teardown out of both sides.

steady (issue 10, target >= 0.98x): training throughput once started, on a run of at least 60 s. Steps per second
  over epochs 2..N, from the task's own `train/epoch_time_s` (the wall time of each epoch's training loop, without
  validation) and the step at each epoch's end, through `workbench run --wait` against the bare process. Start-up
  and the first epoch are left out; what remains is what the workbench costs a training loop that is running
  (metric flushing, the heartbeat, housekeeping, the thread-share watcher). Needs a task that logs
  `train/epoch_time_s` (recommendation does). The quick preset trains an epoch in ~0.5 s on 2 idle cores: 120 epochs.

first-step (issue 10, target <= 2.5 s on 2 cores): from the start of `workbench run --detach` to the wall time of
  the first logged training step (`print_freq=1`, so step 1 is logged). Also shown: from `api.launch_run` in a
  process that has already imported the api (what the UI server pays), and a bare process from its start to its
  first step (the floor: interpreter, torch, data, one step). The stages of the detached launch: the run inserted
  (the CLI has started, imported and validated), taken by its supervisor (that process has started and opened the
  store), its worker running (ditto, before torch), and step 1 seen in the store (what a dashboard can show:
  after the metric flush and the journal sync; polled every 0.05 s).

    .venv/bin/python benchmarks/bench_overhead.py configs/recommendation/quick.yaml --repeats 7
    .venv/bin/python benchmarks/bench_overhead.py configs/recommendation/quick.yaml --measure steady --repeats 3 --set epochs=120
    .venv/bin/python benchmarks/bench_overhead.py configs/recommendation/quick.yaml --measure first-step --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKBENCH = str(Path(sys.executable).with_name("workbench"))
# One WORKBENCH_HOME for both sides: one store for the workbench runs, and one data cache, warmed
# before the first timed run, so neither side pays preprocessing the other skips. PYTHONPATH: this checkout's
# workbench in every process, also the `workbench` script's (it may be installed from another checkout).
HOME = tempfile.mkdtemp(prefix="wb-bench-")
ENV = {
    **os.environ,
    "WORKBENCH_HOME": HOME,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}
# The training function in a fresh process, metrics to memory; they are written to the JSON file named by argv[1].
BARE = """
import json, sys, tempfile, time
from workbench.config.io import load_config_file
from workbench.runner.context import RunContext
from workbench.tasks import TASKS
cfg = load_config_file(sys.argv[2], sys.argv[3:])
spec = TASKS[cfg.task]
ctx = RunContext.local(tempfile.mkdtemp(), monitor=spec.monitor(cfg), keep_ckpt=cfg.keep_ckpt)
spec.run(cfg, ctx)
ctx.close()
trained = time.time()
with open(sys.argv[1], "w") as f:
    json.dump({"trained": trained, "metrics": ctx.backend.metrics}, f)
"""
# api.launch_run in a process that has imported the api already (as the UI server has); prints when it called it.
API_LAUNCH = """
import sys, time
from workbench import api
cfg = api.validate_file(sys.argv[1], sys.argv[2:])
t0 = time.time()
run = api.launch_run(cfg, name="bench")
print(repr(t0), run.id, flush=True)
"""
Metrics = list[tuple[str, int, float, float]]  # (key, step, value, wall)


# -- the two sides -------------------------------------------------------------------------------------------------
def bare(config: str, overrides: list[str]) -> tuple[float, float, float, Metrics]:
    """(start wall time, seconds until the process ended, seconds until training returned, metrics)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.json"
        t0_wall, t0 = time.time(), time.perf_counter()
        subprocess.run([sys.executable, "-c", BARE, str(out), config, *overrides], check=True, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL)
        total = time.perf_counter() - t0
        result = json.loads(out.read_text())
    metrics = [(k, int(s), float(v), float(w)) for k, s, v, w in result["metrics"]]
    return t0_wall, total, result["trained"] - t0_wall, metrics


def _db() -> sqlite3.Connection:
    return sqlite3.connect(Path(HOME) / "workbench.db")


def _store_metrics(run_id: str) -> Metrics:
    with _db() as db:
        rows = db.execute("select key, step, value, wall from metric where run_id = ? order by id", (run_id,))
        return [tuple(row) for row in rows]  # type: ignore[misc]


def _wait_ended(run_id: str, timeout: float = 1800, start_timeout: float = 120) -> float:
    """The run's ended_at once it has completed; an error if it ends otherwise, or does not start or end in time."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        with _db() as db:
            status, ended_at = db.execute("select status, ended_at from run where id = ?", (run_id,)).fetchone()
        if status == "completed" and ended_at is not None:
            return float(ended_at)
        if status in ("failed", "cancelled", "lost"):
            raise RuntimeError(f"benchmark run {run_id} ended {status}; see {HOME}/runs/{run_id}/train.log")
        if status in ("queued", "starting") and time.time() - t0 > start_timeout:
            raise RuntimeError(f"benchmark run {run_id} is still {status} after {start_timeout:.0f} s; see {HOME}/runs/{run_id}/supervisor.log")
        time.sleep(0.1)
    raise TimeoutError(f"benchmark run {run_id} did not end in {timeout:.0f} s")


def _cli_run(config: str, overrides: list[str], mode: str) -> str:
    """`workbench run CONFIG --set ... --wait|--detach`; returns the run id from its first line."""
    sets = [arg for o in overrides for arg in ("--set", o)]
    out = subprocess.run([WORKBENCH, "run", config, *sets, mode], check=True, cwd=ROOT, env=ENV, capture_output=True, text=True)
    return out.stdout.split()[1]  # "run <id> (<task>) <status>; folder ..."


def through_workbench(config: str, overrides: list[str]) -> tuple[float, float, float, Metrics]:
    """(start wall time, seconds until `workbench run --wait` returned, seconds until the run's ended_at, metrics)."""
    t0_wall, t0 = time.time(), time.perf_counter()
    run_id = _cli_run(config, overrides, "--wait")
    total = time.perf_counter() - t0
    return t0_wall, total, _wait_ended(run_id) - t0_wall, _store_metrics(run_id)


def launch_detached(config: str, overrides: list[str], *, via_api: bool) -> tuple[float, Metrics, dict[str, float]]:
    """Launch with `workbench run --detach` (or api.launch_run in a warm process), wait for the run to end;
    (the wall time the launch began, the run's metrics, when it passed each stage of its start)."""
    if via_api:
        out = subprocess.run([sys.executable, "-c", API_LAUNCH, config, *overrides], check=True, cwd=ROOT, env=ENV, capture_output=True, text=True)
        t0_text, run_id = out.stdout.split()[:2]
        t0_wall = float(t0_text)
    else:
        t0_wall = time.time()
        run_id = _cli_run(config, overrides, "--detach")
    stored = _first_step_stored(run_id)
    _wait_ended(run_id)
    return t0_wall, _store_metrics(run_id), {**_start_stages(run_id), "step 1 in the store": stored}


def _first_step_stored(run_id: str, timeout: float = 120) -> float:
    """The wall time the run's step-1 loss was first seen in the store (what a dashboard can show), polled every
    0.05 s; nan if the run ended without it."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        with _db() as db:
            if db.execute("select 1 from metric where run_id = ? and key = 'train/loss' and step = 1", (run_id,)).fetchone():
                return time.time()
            (status,) = db.execute("select status from run where id = ?", (run_id,)).fetchone()
        if status in ("completed", "failed", "cancelled", "lost"):
            return float("nan")
        time.sleep(0.05)
    return float("nan")


def _start_stages(run_id: str) -> dict[str, float]:
    """Wall times of a run's start: inserted, its supervisor took it, its worker reported running (marked
    running: it has read the run and opened the store; torch, the task's modules and its data come after)."""
    with _db() as db:
        created, started = db.execute("select created_at, started_at from run where id = ?", (run_id,)).fetchone()
        (running,) = db.execute("select min(time) from event where run_id = ? and kind = 'running'", (run_id,)).fetchone()
    return {"inserted": created, "supervisor took it": started, "worker running": running}


# -- what is measured ----------------------------------------------------------------------------------------------
def first_step_s(t0_wall: float, metrics: Metrics) -> float:
    walls = [w for k, s, _, w in metrics if k == "train/loss" and s == 1]
    if not walls:
        raise RuntimeError("no train/loss at step 1: run the first-step measurement with print_freq=1")
    return walls[0] - t0_wall


def steady_steps_per_s(metrics: Metrics) -> tuple[float, float]:
    """(steps per second over epochs 2..N, seconds of training they took), from the task's epoch times."""
    ends = sorted((s, v) for k, s, v, _ in metrics if k == "train/epoch_time_s")
    if len(ends) < 3:
        raise RuntimeError("need at least 3 epochs that log train/epoch_time_s (a recommendation preset)")
    steps = ends[-1][0] - ends[0][0]
    seconds = sum(v for _, v in ends[1:])
    return steps / seconds, seconds


def _runs(xs: list[float], digits: int = 1) -> str:
    return ", ".join(f"{x:.{digits}f}" for x in xs)


def _ratios(w: list[float], b: list[float]) -> list[float]:
    return [wi / bi for wi, bi in zip(w, b)]


def measure_end_to_end(config: str, overrides: list[str], repeats: int) -> None:
    bare_s, wb_s = [], []
    for _ in range(repeats):
        bare_s.append(bare(config, overrides)[1:3])
        wb_s.append(through_workbench(config, overrides)[1:3])
    for i, what in enumerate(("end to end", "until trained")):
        b, w = [x[i] for x in bare_s], [x[i] for x in wb_s]
        ratios = _ratios(w, b)
        target = " (target <= 1.05x)" if i == 0 else ""
        print(f"  {what:13s}: bare median {statistics.median(b):.2f} s (runs {_runs(b)}), workbench median "
              f"{statistics.median(w):.2f} s (runs {_runs(w)}); pair ratios {_runs(ratios, 3)} "
              f"-> median {statistics.median(ratios):.3f}x{target}")  # fmt: skip


def measure_steady(config: str, overrides: list[str], repeats: int) -> None:
    # no early stop: the run must last its epochs
    overrides = ["stopping_step=100000", *overrides]
    b_rate, w_rate, b_total, w_total = [], [], [], []
    for _ in range(repeats):
        _, total, _, metrics = bare(config, overrides)
        b_rate.append(steady_steps_per_s(metrics)[0])
        b_total.append(total)
        _, total, _, metrics = through_workbench(config, overrides)
        w_rate.append(steady_steps_per_s(metrics)[0])
        w_total.append(total)
    ratios = _ratios(w_rate, b_rate)
    short = " SHORTER THAN 60 s: raise epochs" if min(b_total + w_total) < 60 else ""
    print(f"  run length   : bare {_runs(b_total)} s, workbench {_runs(w_total)} s (at least 60 s){short}")
    print(f"  steady steps/s (epochs 2..N): bare median {statistics.median(b_rate):.2f} (runs {_runs(b_rate, 2)}), "
          f"workbench median {statistics.median(w_rate):.2f} (runs {_runs(w_rate, 2)}); pair ratios {_runs(ratios, 3)} "
          f"-> median {statistics.median(ratios):.3f}x (target >= 0.98x)")  # fmt: skip


def measure_first_step(config: str, overrides: list[str], repeats: int) -> None:
    overrides = ["print_freq=1", *overrides]
    sides: dict[str, list[float]] = {"bare process": [], "workbench run --detach": [], "api.launch_run (warm)": []}
    stages: dict[str, list[float]] = {}
    for _ in range(repeats):
        t0, _, _, metrics = bare(config, overrides)
        sides["bare process"].append(first_step_s(t0, metrics))
        t0, metrics, at = launch_detached(config, overrides, via_api=False)
        sides["workbench run --detach"].append(first_step_s(t0, metrics))
        for stage, wall in at.items():
            stages.setdefault(stage, []).append(wall - t0)
        t0, metrics, _ = launch_detached(config, overrides, via_api=True)
        sides["api.launch_run (warm)"].append(first_step_s(t0, metrics))
    for what, xs in sides.items():
        target = " (target <= 2.5 s)" if what.startswith("workbench run") else ""
        print(f"  to the first step, {what:24s}: median {statistics.median(xs):.2f} s (runs {_runs(xs, 2)}){target}")
    print("  workbench run --detach, seconds from its start until the run was "
          + ", ".join(f"{stage} {statistics.median(xs):.2f}" for stage, xs in stages.items()) + " (medians)")
    ratios = _ratios(sides["workbench run --detach"], sides["bare process"])
    print(f"  workbench run --detach / bare process, pair ratios {_runs(ratios, 2)} -> median {statistics.median(ratios):.2f}x")


MEASURES = {"end-to-end": measure_end_to_end, "steady": measure_steady, "first-step": measure_first_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--measure", choices=sorted(MEASURES), action="append", help="default: end-to-end (repeatable)")
    ap.add_argument("--set", action="append", default=[], help="key=value override applied to both sides")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    bare(args.config, [*args.set, "epochs=1"])  # untimed: fills the data cache both sides read
    for what in args.measure or ["end-to-end"]:
        label = args.config + "".join(f" --set {o}" for o in args.set)
        print(f"{what}: {label}: {args.repeats} pairs, bare and workbench alternating; {cores} cores, load average "
              f"{os.getloadavg()[0]:.1f} at the start", flush=True)  # fmt: skip
        MEASURES[what](args.config, args.set, args.repeats)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
