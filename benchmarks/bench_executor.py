"""The two executors side by side on one preset: `local` (a detached supervisor on this machine) against `ray` (Ray
places the supervisor on a node of a cluster; here a local head with 2 CPUs that this script starts, or the cluster
at RAY_ADDRESS with --use-address). Repeats alternate local, ray, local, ray, ... so drift of a shared machine hits
both alike. One WORKBENCH_HOME and SQLite store for both (one node).

Per run:
  first step   from the start of `workbench run CONFIG --detach` to the wall time of the first logged training
               step (print_freq=1). What a user waits for between the click and the first point on the chart.
  launch cpu   CPU seconds (user + system) of the `workbench run --detach` process: what launching costs the
               launching machine (the ray side connects to the cluster as a driver and submits an actor).
  step time    steady-state wall seconds per optimizer step: from the first `train/loss` point after a quarter of
               the run's steps to the last one (start-up and the first epochs left out).
  supervision  resident memory (MB) of what watches the run besides its worker, halfway through: the supervisor,
               and under ray also the Ray actor process that hosts it.

    .venv/bin/python benchmarks/bench_executor.py configs/recommendation/quick.yaml --repeats 3
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run(executor: str, config: str, overrides: list[str], env: dict[str, str], home: str) -> dict[str, float]:
    env = {**env, "WORKBENCH_EXECUTOR": executor}
    name = f"bench-{executor}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "workbench.cli", "run", config, "--detach", "--name", name, "--set", "print_freq=1"]
    for o in overrides:
        cmd += ["--set", o]
    cpu0 = _children_cpu()
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    launch_cpu = _children_cpu() - cpu0
    if out.returncode != 0:
        raise SystemExit(f"{executor}: `workbench run` failed: {out.stderr[-2000:]}")
    db = sqlite3.connect(Path(home) / "workbench.db", timeout=30)
    run_id = db.execute("SELECT id FROM run WHERE name = ?", (name,)).fetchone()[0]
    deadline = time.time() + 900
    memory_mb = 0.0
    while True:
        status, done, total, pid = db.execute(
            "SELECT status, progress_done, progress_total, supervisor_pid FROM run WHERE id = ?", (run_id,)
        ).fetchone()
        if status in ("completed", "failed", "cancelled", "lost"):
            break
        if not memory_mb and status == "running" and done and total and done >= total / 2 and pid:
            memory_mb = _supervision_mb(pid, executor)
        if time.time() > deadline:
            raise SystemExit(f"{executor}: run {run_id} did not end within 900 s")
        time.sleep(0.2)
    if status != "completed":
        raise SystemExit(f"{executor}: run {run_id} ended {status}")
    points = db.execute(
        "SELECT step, wall FROM metric WHERE run_id = ? AND key = 'train/loss' ORDER BY step", (run_id,)
    ).fetchall()
    db.close()
    first_wall = points[0][1]
    last_step = points[-1][0]
    start = next(p for p in points if p[0] >= last_step // 4)
    step_time = (points[-1][1] - start[1]) / max(1, points[-1][0] - start[0])
    return {"first_step_s": first_wall - t0, "launch_cpu_s": launch_cpu, "step_ms": step_time * 1000, "supervision_mb": memory_mb}


def _supervision_mb(supervisor_pid: int, executor: str) -> float:
    """RSS of what watches a run besides its worker: the supervisor, and under ray also the actor process that
    hosts it (the supervisor is a Ray driver there too, for its housekeeping)."""
    import psutil

    try:
        sup = psutil.Process(supervisor_pid)
        rss = sup.memory_info().rss
        if executor == "ray":
            rss += sup.parent().memory_info().rss  # type: ignore[union-attr]
        return rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--use-address", action="store_true", help="use the cluster at RAY_ADDRESS instead of starting one")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="wb-bench-exec-")
    env = {
        **os.environ,
        "WORKBENCH_HOME": home,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    head = None
    if not args.use_address:
        from tests.support.ray_cluster import RayHead

        head = RayHead(cpus=2)
        head.start(env=env)
        env["RAY_ADDRESS"] = head.address
    results: dict[str, list[dict[str, float]]] = {"local": [], "ray": []}
    try:
        one_run("local", args.config, args.overrides, env, home)  # warm the data cache and the page cache
        for i in range(args.repeats):
            for executor in ("local", "ray"):
                r = one_run(executor, args.config, args.overrides, env, home)
                results[executor].append(r)
                print(f"  {executor:5s} #{i + 1}: " + "  ".join(f"{k}={v:.3f}" for k, v in r.items()), flush=True)
    finally:
        if head is not None:
            head.stop()
    print(f"\n{args.config} {' '.join(args.overrides)}: median of {args.repeats} (ray / local)")
    for key in ("first_step_s", "launch_cpu_s", "step_ms", "supervision_mb"):
        lo = statistics.median(r[key] for r in results["local"])
        ra = statistics.median(r[key] for r in results["ray"])
        print(f"  {key:13s} local {lo:8.3f}   ray {ra:8.3f}   ratio {ra / lo:5.2f}x")


if __name__ == "__main__":
    main()
