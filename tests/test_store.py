"""Store on a fresh SQLite database each: transitions, batched metrics, summaries, downsampling, deletes."""

from __future__ import annotations

import math

import pytest

from workbench.settings import get_settings
from workbench.store import get_engine
from workbench.store import metrics as m
from workbench.store import runs


@pytest.fixture()
def engine(home):
    return get_engine(get_settings().database_url)


def _run(engine):  # type: ignore[no-untyped-def]
    return runs.create_run(engine, task="linreg", name="r", config={}, monitor=("valid/loss", "min"))


def test_sqlite_pragmas(engine):
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_transitions_are_checked_and_logged(engine):
    r = _run(engine)
    assert runs.transition(engine, r.id, "starting")
    assert runs.transition(engine, r.id, "running")
    with pytest.raises(runs.IllegalTransition):
        runs.transition(engine, r.id, "queued")
    assert runs.transition(engine, r.id, "completed")
    # a late report after the run ended is ignored, not an error, when the caller says what it expected
    assert not runs.transition(engine, r.id, "failed", expect=("running",))
    assert runs.get_run(engine, r.id).status == "completed"
    from workbench.store.events import list_events

    assert [e.kind for e in list_events(engine, run_id=r.id)] == ["queued", "starting", "running", "completed"]


def test_status_is_constrained_in_the_database(engine):
    r = _run(engine)
    with pytest.raises(Exception):
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE run SET status = 'exploded' WHERE id = ?", (r.id,))


def test_metrics_summary_and_incremental_reads(engine):
    r = _run(engine)
    m.write_metrics(engine, run_id=r.id, points=[("train/loss", s, 10.0 - s, 1.0 + s) for s in range(1, 6)])
    m.write_metrics(engine, run_id=r.id, points=[("train/loss", 6, 7.5, 7.0), ("valid/loss", 6, 0.5, 7.0)])
    summ = m.summaries(engine, run_ids=[r.id]).set_index("key")
    assert summ.loc["train/loss", "count"] == 6
    assert summ.loc["train/loss", "last"] == 7.5 and summ.loc["train/loss", "min"] == 5.0
    assert summ.loc["train/loss", "first_step"] == 1 and summ.loc["train/loss", "last_step"] == 6
    first = m.read_since(engine, run_id=r.id)
    assert len(first) == 7
    m.write_metrics(engine, run_id=r.id, points=[("train/loss", 7, 1.0, 8.0)])
    new = m.read_since(engine, run_id=r.id, after_id=int(first.id.max()))
    assert new[["key", "step", "value"]].values.tolist() == [["train/loss", 7, 1.0]]
    assert runs.get_run(engine, r.id).best_value == 0.5  # valid/loss, min


def test_downsampling_keeps_envelope_and_bounds(engine):
    r = _run(engine)
    n = 50_000
    points = [("train/loss", s, math.sin(s / 500.0) + (5.0 if s == 31_337 else 0.0), float(s)) for s in range(n)]
    for i in range(0, n, 10_000):
        m.write_metrics(engine, run_id=r.id, points=points[i : i + 10_000])
    series = m.read_series(engine, run_id=r.id, key="train/loss", max_points=2000)
    assert series.downsampled and series.total_points == n
    assert 500 <= len(series.frame) <= 2000
    # the spike survives in the max envelope even though the bucket mean hides it
    assert series.frame.vmax.max() == pytest.approx(5.0 + math.sin(31_337 / 500.0))
    assert series.frame.step.is_monotonic_increasing
    # bucket means agree with the raw data
    raw_mean = sum(v for _, _, v, _ in points) / n
    weights = series.frame.value  # equal-width buckets except the last
    assert weights.mean() == pytest.approx(raw_mean, abs=0.05)
    small = m.read_series(engine, run_id=r.id, key="train/loss", max_points=n)
    assert not small.downsampled and len(small.frame) == n


def test_delete_removes_every_row(engine):
    r = _run(engine)
    m.write_metrics(engine, run_id=r.id, points=[("a", 1, 1.0, 1.0)])
    runs.delete_run_rows(engine, r.id)
    with engine.connect() as conn:
        for table in ("run", "metric", "metric_summary", "metric_rollup", "event"):
            assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar() == 0


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    """The first `workbench run`s on a fresh machine race to create the tables; none may fail for it."""
    import subprocess
    import sys

    code = "import sys; from workbench.store import get_engine; get_engine(sys.argv[1])"
    for round_ in range(2):
        url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True) for _ in range(6)]
        errors = [p.communicate()[1] for p in procs if p.wait() != 0]
        assert not errors, errors[0][-500:]
