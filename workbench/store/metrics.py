"""Metric points: batched writes through SQLAlchemy Core, incremental reads, downsampling in SQL.

The ORM costs ~15x per row (reference/environment.md), so points go in with one executemany per batch (SQLite) or
one COPY (PostgreSQL). Each batch
also updates, in one upsert per (key, level, bucket):
- `metric_summary` (first/last step, last, min, max, count) for run tables and chart sizing without a scan;
- `metric_rollup`, step buckets of width 4**level for level 2..MAX_LEVEL with sum/count/min/max, so a chart of a
  long series reads at most `max_points` pre-aggregated rows (a GROUP BY over 1M raw rows takes ~0.5 s in SQLite;
  the rollup read takes milliseconds).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable, Sequence
from functools import lru_cache
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Connection, Engine, TextClause, select, text

from workbench.store.models import Metric, MetricSummary

if TYPE_CHECKING:
    import pandas as pd  # imported where frames are built: the worker and supervisor never need it

Point = tuple[str, int, float, float]  # key, step, value, wall time

MIN_LEVEL = 2  # buckets narrower than 16 steps: grouping the raw points is cheap enough
MAX_LEVEL = 10  # 4**10 ~ 1M steps per bucket

# The upserts keep the larger/smaller of the stored and the new value: SQLite spells that with its two-argument
# MAX/MIN, PostgreSQL with GREATEST/LEAST (its MAX/MIN are aggregates only). {hi} and {lo} are filled per dialect.
_SUMMARY_UPSERT = (
    "INSERT INTO metric_summary (run_id, key, last, last_step, first_step, min, max, count) "
    "VALUES (:run_id, :key, :last, :last_step, :first_step, :min, :max, :count) "
    "ON CONFLICT (run_id, key) DO UPDATE SET "
    "last = CASE WHEN excluded.last_step >= metric_summary.last_step THEN excluded.last ELSE metric_summary.last END, "
    "last_step = {hi}(excluded.last_step, metric_summary.last_step), "
    "first_step = {lo}(excluded.first_step, metric_summary.first_step), "
    "min = {lo}(excluded.min, metric_summary.min), "
    "max = {hi}(excluded.max, metric_summary.max), "
    "count = metric_summary.count + excluded.count"
)
_ROLLUP_UPSERT = (
    "INSERT INTO metric_rollup (run_id, key, level, bucket, step_max, total, count, vmin, vmax, wall) "
    "VALUES (:run_id, :key, :level, :bucket, :step_max, :total, :count, :vmin, :vmax, :wall) "
    "ON CONFLICT (run_id, key, level, bucket) DO UPDATE SET "
    "step_max = {hi}(excluded.step_max, metric_rollup.step_max), "
    "total = metric_rollup.total + excluded.total, "
    "count = metric_rollup.count + excluded.count, "
    "vmin = {lo}(excluded.vmin, metric_rollup.vmin), "
    "vmax = {hi}(excluded.vmax, metric_rollup.vmax), "
    "wall = {hi}(excluded.wall, metric_rollup.wall)"
)
_GREATEST_LEAST = {"sqlite": ("MAX", "MIN"), "postgresql": ("GREATEST", "LEAST")}


@lru_cache(maxsize=None)
def _upserts(dialect: str) -> tuple[TextClause, TextClause]:
    if dialect not in _GREATEST_LEAST:
        raise RuntimeError(f"the metric store supports SQLite and PostgreSQL, not {dialect!r} (WORKBENCH_DB_URL)")
    hi, lo = _GREATEST_LEAST[dialect]
    return text(_SUMMARY_UPSERT.format(hi=hi, lo=lo)), text(_ROLLUP_UPSERT.format(hi=hi, lo=lo))


_INSERT_POINTS = text("INSERT INTO metric (run_id, key, step, value, wall) VALUES (:run_id, :key, :step, :value, :wall)")


def _executemany(conn, statement, names: list[str], rows: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    """executemany with positional tuples on SQLite (skips per-row parameter dicts: ~3x faster), dicts elsewhere."""
    if not rows:
        return
    if conn.dialect.paramstyle == "qmark":
        sql = str(statement)
        assert re.findall(r":(\w+)", sql) == names, "tuple order must match the statement's parameters"
        conn.exec_driver_sql(re.sub(r":\w+", "?", sql), rows)
    else:
        conn.execute(statement, [dict(zip(names, r)) for r in rows])


def _insert_points(conn, rows: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    """The points of a batch, inside the caller's transaction. PostgreSQL: COPY (binary), one stream instead of
    psycopg's executemany, which runs one INSERT per point (~17k points/s against the 50k target); elsewhere the
    executemany path."""
    if conn.dialect.name != "postgresql":
        _executemany(conn, _INSERT_POINTS, ["run_id", "key", "step", "value", "wall"], rows)
        return
    raw = conn.connection.driver_connection  # the psycopg connection of this transaction
    with raw.cursor() as cur, cur.copy("COPY metric (run_id, key, step, value, wall) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["text", "text", "int4", "float8", "float8"])
        for row in rows:
            copy.write_row(row)


def _aggregate(run_id: str, key: str, steps: np.ndarray, values: np.ndarray, walls: np.ndarray) -> tuple[tuple, list[tuple]]:
    """Summary row and rollup rows for one key's points in a batch (numpy, sorted by step)."""
    order = np.argsort(steps, kind="stable")
    steps, values, walls = steps[order], values[order], walls[order]
    n = len(steps)
    summary = (run_id, key, float(values[-1]), int(steps[-1]), int(steps[0]), float(values.min()), float(values.max()), n)
    rollups: list[tuple] = []
    for level in range(MIN_LEVEL, MAX_LEVEL + 1):
        buckets = steps // (4**level)
        starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
        ends = np.r_[starts[1:], n] - 1
        rollups.extend(
            zip(
                [run_id] * len(starts),
                [key] * len(starts),
                [level] * len(starts),
                buckets[starts].tolist(),
                steps[ends].tolist(),
                np.add.reduceat(values, starts).tolist(),
                (ends - starts + 1).tolist(),
                np.minimum.reduceat(values, starts).tolist(),
                np.maximum.reduceat(values, starts).tolist(),
                np.maximum.reduceat(walls, starts).tolist(),
            )
        )
    return summary, rollups


def write_metrics(engine: Engine, *, run_id: str, points: Iterable[Point]) -> int:
    """Store points, their summaries and rollups in one transaction (all or nothing; raises on failure)."""
    with engine.begin() as conn:
        return write_points(conn, run_id=run_id, points=points)


def write_points(conn: Connection, *, run_id: str, points: Iterable[Point]) -> int:
    """write_metrics inside the caller's transaction (the journal applies points with other records at once)."""
    points = list(points)
    if not points:
        return 0
    keys, steps, values, walls = zip(*points)
    rows = list(zip([run_id] * len(points), keys, map(int, steps), map(float, values), map(float, walls)))
    steps_a = np.asarray(steps, dtype=np.int64)
    values_a = np.asarray(values, dtype=np.float64)
    walls_a = np.asarray(walls, dtype=np.float64)
    keys_a = np.asarray(keys, dtype=object)
    summary_rows, rollup_rows = [], []
    for key in dict.fromkeys(keys):
        mask = keys_a == key
        summary, rollups = _aggregate(run_id, key, steps_a[mask], values_a[mask], walls_a[mask])
        summary_rows.append(summary)
        rollup_rows.extend(rollups)
    summary_upsert, rollup_upsert = _upserts(conn.dialect.name)
    _insert_points(conn, rows)
    _executemany(conn, summary_upsert, ["run_id", "key", "last", "last_step", "first_step", "min", "max", "count"], summary_rows)
    _executemany(
        conn, rollup_upsert, ["run_id", "key", "level", "bucket", "step_max", "total", "count", "vmin", "vmax", "wall"], rollup_rows
    )
    return len(rows)


def metric_keys(engine: Engine, *, run_id: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(MetricSummary.key).where(MetricSummary.run_id == run_id).order_by(MetricSummary.key))
        return [r[0] for r in rows]


def summaries(engine: Engine, *, run_ids: list[str]) -> pd.DataFrame:
    """One row per (run, key): last, last_step, first_step, min, max, count."""
    with engine.connect() as conn:
        rows = conn.execute(select(MetricSummary).where(MetricSummary.run_id.in_(run_ids))).mappings().all()  # type: ignore[attr-defined]
    return _frame([tuple(r[c] for c in SUMMARY_COLUMNS) for r in rows], SUMMARY_COLUMNS)


def read_since(engine: Engine, *, run_id: str, after_id: int = 0, keys: list[str] | None = None) -> pd.DataFrame:
    """Points written after row id `after_id` (incremental polling); columns id, key, step, value, wall."""
    q = select(Metric.id, Metric.key, Metric.step, Metric.value, Metric.wall).where(
        Metric.run_id == run_id, Metric.id > after_id  # type: ignore[operator]
    )
    if keys:
        q = q.where(Metric.key.in_(keys))  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(Metric.id)).all()
    return _frame(rows, ["id", "key", "step", "value", "wall"])


def read_after(engine: Engine, *, run_id: str, after: dict[str, int], limit: int = 5000) -> dict[str, list[tuple]]:
    """Each key's points with a step after the one given, in step order, at most `limit` per key: the Dashboard's
    live charts ask this every second for the points they do not have yet.

    One (run_id, key, step) index seek per key. A filter on the row id instead (as `read_since` does) made both
    SQLite and PostgreSQL walk every stored point of the key on each poll."""
    sql = text("SELECT step, value, wall FROM metric WHERE run_id = :r AND key = :k AND step > :s ORDER BY step, id LIMIT :n")
    with engine.connect() as conn:
        return {key: [tuple(r) for r in conn.execute(sql, {"r": run_id, "k": key, "s": step, "n": limit})] for key, step in after.items()}


def iter_points(engine: Engine, *, run_id: str, keys: list[str] | None = None, chunk_rows: int = 20_000) -> Generator[Sequence[Point], None, None]:
    """Every stored point of a run (or of `keys`), ordered by key then step, in chunks of at most `chunk_rows`
    rows that unpack as (key, step, value, wall).

    One query read through a streaming cursor: SQLite steps its statement as rows are fetched and PostgreSQL gets a
    server-side cursor, so a 10M-point export holds one chunk in memory, not the run. The (run_id, key, step) index
    gives the order without a sort. The read holds one snapshot for its whole length, so a run still training keeps
    writing (WAL) and the export is consistent as of its start. Plain SQL text: the ORM's column processing
    doubled the read time.
    """
    sql = "SELECT key, step, value, wall FROM metric WHERE run_id = :r"
    params: dict[str, object] = {"r": run_id}
    if keys is not None:
        sql += f" AND key IN ({', '.join(f':k{i}' for i in range(len(keys)))})"
        params.update({f"k{i}": k for i, k in enumerate(keys)})
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(text(sql + " ORDER BY key, step"), params)
        yield from result.partitions(chunk_rows)  # type: ignore[misc]


SUMMARY_COLUMNS = ["run_id", "key", "last", "last_step", "first_step", "min", "max", "count"]


def _frame(rows: list, columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    # plain tuples: pandas probes SQLAlchemy Row objects attribute by attribute, ~10x slower
    return pd.DataFrame.from_records([tuple(r) for r in rows], columns=columns)


@dataclass
class Series:
    """A possibly downsampled series. Downsampled: `value` is the bucket mean, vmin/vmax its envelope."""

    frame: pd.DataFrame  # columns: step, value, vmin, vmax, wall
    total_points: int
    downsampled: bool


SERIES_COLUMNS = ["step", "value", "vmin", "vmax", "wall"]


def read_series(engine: Engine, *, run_id: str, key: str, max_points: int = 2000) -> Series:
    """The whole series if it has at most `max_points` points, else at most `max_points` step buckets."""
    params = {"r": run_id, "k": key}
    with engine.connect() as conn:
        summary = conn.execute(
            text("SELECT first_step, last_step, count FROM metric_summary WHERE run_id = :r AND key = :k"), params
        ).first()
        if summary is None:
            return Series(_frame([], SERIES_COLUMNS), 0, False)
        lo, hi, n = summary
        if n <= max_points:
            rows = conn.execute(
                text("SELECT step, value, value, value, wall FROM metric WHERE run_id = :r AND key = :k ORDER BY step, id"),
                params,
            ).all()
            return Series(_frame(rows, SERIES_COLUMNS), int(n), False)
        width = max(1, -(-(hi - lo + 1) // max_points))  # ceil: at most max_points buckets
        level = next((lv for lv in range(MIN_LEVEL, MAX_LEVEL + 1) if 4**lv >= width), None)
        if level is None or width < 4**MIN_LEVEL:
            # narrow buckets over a short step range: group the raw points (few thousand rows per bucket at most)
            rows = conn.execute(
                text(
                    "SELECT MAX(step), AVG(value), MIN(value), MAX(value), MAX(wall) FROM metric "
                    "WHERE run_id = :r AND key = :k GROUP BY step / :w ORDER BY 1"
                ),
                {**params, "w": width},
            ).all()
        else:
            rows = conn.execute(
                text(
                    "SELECT step_max, total / count, vmin, vmax, wall FROM metric_rollup "
                    "WHERE run_id = :r AND key = :k AND level = :lv ORDER BY bucket"
                ),
                {**params, "lv": level},
            ).all()
    return Series(_frame(rows, SERIES_COLUMNS), int(n), True)
