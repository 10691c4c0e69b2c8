"""Store benchmark on SQLite and PostgreSQL side by side: metric ingestion rate and chart-query latency on a
1,000,000-point series.

Targets (issue 2): >= 50,000 points/s ingested; a chart query over 1M points returns <= 5,000 points in <= 100 ms.
Also shows the ORM-per-row insert path that the store avoids. PostgreSQL is a throwaway server started here
(Debian's postgresql, as in the tests) unless --pg-url names one.

    .venv/bin/python benchmarks/bench_store.py [--points 1000000] [--backends sqlite,postgresql] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support.postgres

from sqlalchemy import Engine  # noqa: E402

from workbench.store import get_engine  # noqa: E402
from workbench.store.engine import session  # noqa: E402
from workbench.store.metrics import read_series, write_metrics  # noqa: E402
from workbench.store.models import Metric, RunCreate  # noqa: E402
from workbench.store.runs import create_run  # noqa: E402


@dataclass
class Result:
    backend: str
    ingest_rate: float
    orm_rate: float
    returned: int
    median_ms: float
    worst_ms: float


def _new_run(engine: Engine, name: str) -> str:
    return create_run(engine, run_in=RunCreate(task="bench", name=name, monitor_key="train/loss", monitor_mode="min")).id


def bench(backend: str, engine: Engine, points: int, batch: int) -> Result:
    run_id = _new_run(engine, "bench")
    t0 = time.perf_counter()
    for start in range(0, points, batch):
        now = time.time()
        write_metrics(engine, run_id=run_id, points=[("train/loss", s, math.sin(s / 997) + s * 1e-6, now) for s in range(start, min(points, start + batch))])
    rate = points / (time.perf_counter() - t0)

    orm_run = _new_run(engine, "orm")
    n_orm = 20_000
    t0 = time.perf_counter()
    for start in range(0, n_orm, batch):
        with session(engine) as s:
            for step in range(start, start + batch):
                s.add(Metric(run_id=orm_run, key="train/loss", step=step, value=1.0, wall=time.time()))
            s.commit()
    orm_rate = n_orm / (time.perf_counter() - t0)

    read_series(engine, run_id=run_id, key="train/loss", max_points=5000)  # untimed: the first call imports pandas
    timings, sizes = [], []
    for _ in range(20):
        t0 = time.perf_counter()
        series = read_series(engine, run_id=run_id, key="train/loss", max_points=5000)
        timings.append((time.perf_counter() - t0) * 1000)
        sizes.append(len(series.frame))
    return Result(backend, rate, orm_rate, max(sizes), statistics.median(timings), max(timings))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=2_000, help="points per flush (a run flushes every 0.5 s)")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=None, help="an existing PostgreSQL database (default: start a throwaway server)")
    args = ap.parse_args()
    results: list[Result] = []
    server = None
    try:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
            elif backend == "postgresql":
                if args.pg_url:
                    url = args.pg_url
                else:
                    from tests.support.postgres import PostgresServer, available

                    why = available()
                    if why:
                        sys.exit(f"cannot benchmark PostgreSQL: {why}")
                    server = PostgresServer()
                    server.start()
                    url = server.create_database()
            else:
                sys.exit(f"unknown backend {backend!r}: sqlite or postgresql")
            results.append(bench(backend, get_engine(url), args.points, args.batch))
    finally:
        if server is not None:
            server.destroy()

    print(f"{args.points:,} points in batches of {args.batch}; targets: ingest >= 50,000 points/s, chart <= 5000 points in <= 100 ms")
    print(f"{'backend':<11} {'ingest pts/s':>13} {'x target':>9} {'ORM pts/s':>10} {'Core/ORM':>9} {'returned':>9} {'median ms':>10} {'worst ms':>9} {'of budget':>10}")
    for r in results:
        print(
            f"{r.backend:<11} {r.ingest_rate:>13,.0f} {r.ingest_rate / 50_000:>9.2f} {r.orm_rate:>10,.0f} {r.ingest_rate / r.orm_rate:>9.1f} "
            f"{r.returned:>9} {r.median_ms:>10.1f} {r.worst_ms:>9.1f} {r.worst_ms / 100:>10.2f}"
        )
    if len(results) == 2:
        a, b = results
        print(f"{b.backend} / {a.backend}: ingest {b.ingest_rate / a.ingest_rate:.2f}x, chart median {b.median_ms / a.median_ms:.2f}x, worst {b.worst_ms / a.worst_ms:.2f}x")


if __name__ == "__main__":
    main()
