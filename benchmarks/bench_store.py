"""Store benchmark: metric ingestion rate and chart-query latency on a 1,000,000-point series.

Targets (issue 2): >= 50,000 points/s ingested; a chart query over 1M points returns <= 5,000 points in <= 100 ms.
Also shows, side by side, the ORM-per-row insert path that the store avoids.

    .venv/bin/python benchmarks/bench_store.py [--points 1000000]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time

from workbench.store import get_engine
from workbench.store.engine import session
from workbench.store.metrics import read_series, write_metrics
from workbench.store.models import Metric
from workbench.store.runs import create_run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=2_000, help="points per flush (a run flushes every 0.5 s)")
    args = ap.parse_args()
    folder = tempfile.mkdtemp()
    engine = get_engine(f"sqlite:///{folder}/bench.db")
    run = create_run(engine, task="bench", name="bench", config={}, monitor=("train/loss", "min"))

    t0 = time.perf_counter()
    for start in range(0, args.points, args.batch):
        now = time.time()
        write_metrics(engine, run_id=run.id, points=[("train/loss", s, math.sin(s / 997) + s * 1e-6, now) for s in range(start, min(args.points, start + args.batch))])
    ingest_s = time.perf_counter() - t0
    rate = args.points / ingest_s

    orm_run = create_run(engine, task="bench", name="orm", config={}, monitor=("train/loss", "min"))
    n_orm = 20_000
    t0 = time.perf_counter()
    for start in range(0, n_orm, args.batch):
        with session(engine) as s:
            for step in range(start, start + args.batch):
                s.add(Metric(run_id=orm_run.id, key="train/loss", step=step, value=1.0, wall=time.time()))
            s.commit()
    orm_rate = n_orm / (time.perf_counter() - t0)

    timings, sizes = [], []
    for _ in range(20):
        t0 = time.perf_counter()
        series = read_series(engine, run_id=run.id, key="train/loss", max_points=5000)
        timings.append((time.perf_counter() - t0) * 1000)
        sizes.append(len(series.frame))
    p50, worst = statistics.median(timings), max(timings)

    print(f"ingest: {rate:,.0f} points/s over {args.points:,} points (batches of {args.batch}); target >= 50,000 -> {rate / 50_000:.2f}x of target")
    print(f"ORM per row (avoided): {orm_rate:,.0f} points/s -> Core batch path is {rate / orm_rate:.1f}x faster")
    print(f"chart query over {args.points:,} points: {max(sizes)} points returned, median {p50:.1f} ms, worst {worst:.1f} ms; target <= 5000 points in <= 100 ms -> {worst / 100:.2f} of budget")


if __name__ == "__main__":
    main()
