"""Store on a fresh database each, SQLite and PostgreSQL: transitions, batched metrics, summaries, downsampling,
deletes, typed updates, and opening a new store from several processes at once."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import text

from workbench.settings import get_settings
from workbench.store import get_engine
from workbench.store import metrics as m
from workbench.store import runs, schema
from workbench.store.events import list_events
from workbench.store.models import ACTIVE, ENDED, RunCreate, RunStatus, RunUpdate

pytestmark = pytest.mark.both_backends
S = RunStatus


@pytest.fixture()
def engine(home):
    return get_engine(get_settings().database_url)


def _run(engine, **fields):  # type: ignore[no-untyped-def]
    return runs.create_run(engine, run_in=RunCreate(task="linreg", name="r", monitor_key="valid/loss", monitor_mode="min", **fields))


def test_backend_is_the_one_asked_for(engine, store_backend):
    assert engine.dialect.name == store_backend


def test_sqlite_pragmas(engine, store_backend):
    if store_backend != "sqlite":
        pytest.skip("SQLite pragmas")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_transitions_are_checked_and_logged(engine):
    r = _run(engine)
    assert r.status is S.QUEUED
    assert runs.transition(engine, run_id=r.id, to=S.STARTING)
    assert runs.transition(engine, run_id=r.id, to=S.RUNNING, run_in=RunUpdate(worker_pid=123))
    with pytest.raises(runs.IllegalTransition):
        runs.transition(engine, run_id=r.id, to=S.QUEUED)
    assert runs.transition(engine, run_id=r.id, to=S.COMPLETED, message="done")
    # a late report after the run ended is ignored, not an error, when the caller says what it expected
    assert not runs.transition(engine, run_id=r.id, to=S.FAILED, expect=[S.RUNNING])
    done = runs.get_run(engine, run_id=r.id)
    assert done.status is S.COMPLETED and done.worker_pid == 123 and done.ended_at is not None
    events = list_events(engine, run_id=r.id)
    assert [e.kind for e in events] == ["queued", "starting", "running", "completed"]
    assert events[-1].message == "done"


def test_pruned_is_a_final_status(engine):
    r = _run(engine)
    runs.transition(engine, run_id=r.id, to=S.STARTING)
    runs.transition(engine, run_id=r.id, to=S.RUNNING)
    assert runs.transition(engine, run_id=r.id, to=S.PRUNED, message="pruned at step 40")
    run = runs.get_run(engine, run_id=r.id)
    assert run.status is S.PRUNED and run.status in ENDED and run.status not in ACTIVE and run.ended_at
    with pytest.raises(runs.IllegalTransition):
        runs.transition(engine, run_id=r.id, to=S.QUEUED)


def test_transition_writes_status_and_event_in_one_transaction(engine, monkeypatch):
    """If the event cannot be written, the status does not change either."""
    r = _run(engine)

    def broken_event(conn, **_kw):  # type: ignore[no-untyped-def]
        raise RuntimeError("event insert failed")

    monkeypatch.setattr(runs, "_insert_event", broken_event)
    with pytest.raises(RuntimeError, match="event insert failed"):
        runs.transition(engine, run_id=r.id, to=S.STARTING)
    monkeypatch.undo()
    assert runs.get_run(engine, run_id=r.id).status is S.QUEUED
    assert [e.kind for e in list_events(engine, run_id=r.id)] == ["queued"]


def test_compare_and_set_on_status_and_attempt(engine):
    r = _run(engine)
    runs.transition(engine, run_id=r.id, to=S.STARTING)
    # another process already moved it: expect=[QUEUED] no longer holds
    assert not runs.transition(engine, run_id=r.id, to=S.STARTING, expect=[S.QUEUED])
    # a supervisor of attempt 2 must not touch attempt 1
    assert not runs.transition(engine, run_id=r.id, to=S.FAILED, on_attempt=2)
    assert not runs.update_run(engine, run_id=r.id, on_attempt=2, run_in=RunUpdate(heartbeat_at=5.0))
    assert runs.get_run(engine, run_id=r.id).heartbeat_at is None
    assert runs.transition(engine, run_id=r.id, to=S.FAILED, on_attempt=1, run_in=RunUpdate(error="boom"))
    with pytest.raises(runs.RunNotFound):
        runs.transition(engine, run_id="20990101-000000-none", to=S.STARTING)


def test_update_writes_only_the_fields_set(engine):
    r = _run(engine, tags=["a"], notes="keep me")
    runs.update_run(engine, run_id=r.id, run_in=RunUpdate(error="x", phase="loading"))
    runs.update_run(engine, run_id=r.id, run_in=RunUpdate(phase=None, host="node-1", journal_seq=7))
    got = runs.get_run(engine, run_id=r.id)
    assert (got.error, got.phase, got.host, got.journal_seq, got.notes, got.tags) == ("x", None, "node-1", 7, "keep me", ["a"])
    assert not hasattr(RunUpdate(), "status"), "status changes only through transition()"


def test_status_is_constrained_in_the_database(engine):
    r = _run(engine)
    with pytest.raises(Exception, match="ck_run_status|CHECK constraint"):
        with engine.begin() as conn:
            conn.execute(text("UPDATE run SET status = 'exploded' WHERE id = :id"), {"id": r.id})


def test_search_ignores_case_on_both_backends(engine):
    _run(engine, notes="Baseline STAMP")
    assert len(runs.list_runs(engine, text="stamp")) == 1
    assert len(runs.list_runs(engine, text="BASELINE")) == 1
    assert runs.list_runs(engine, text="nothing") == []


def test_metrics_summary_and_incremental_reads(engine):
    r = _run(engine)
    m.write_metrics(engine, run_id=r.id, points=[("train/loss", s, 10.0 - s, 1.0 + s) for s in range(1, 6)])
    m.write_metrics(engine, run_id=r.id, points=[("train/loss", 6, 7.5, 7.0), ("valid/loss", 6, 0.5, 7.0)])
    summ = m.summaries(engine, run_ids=[r.id]).set_index("key")
    assert summ.loc["train/loss", "count"] == 6
    assert summ.loc["train/loss", "last"] == 7.5 and summ.loc["train/loss", "min"] == 5.0
    assert summ.loc["train/loss", "max"] == 9.0
    assert summ.loc["train/loss", "first_step"] == 1 and summ.loc["train/loss", "last_step"] == 6
    first = m.read_since(engine, run_id=r.id)
    assert len(first) == 7
    m.write_metrics(engine, run_id=r.id, points=[("train/loss", 7, 1.0, 8.0)])
    new = m.read_since(engine, run_id=r.id, after_id=int(first.id.max()))
    assert new[["key", "step", "value"]].values.tolist() == [["train/loss", 7, 1.0]]
    assert runs.get_run(engine, run_id=r.id).best_value == 0.5  # valid/loss, min


def test_summary_upsert_keeps_extremes_across_batches_out_of_order(engine):
    """The upserts' greatest/least (MAX/MIN on SQLite, GREATEST/LEAST on PostgreSQL) on every column."""
    r = _run(engine)
    m.write_metrics(engine, run_id=r.id, points=[("k", 10, 3.0, 100.0), ("k", 12, -1.0, 200.0)])
    m.write_metrics(engine, run_id=r.id, points=[("k", 5, 9.0, 50.0)])  # an earlier step arriving late
    row = m.summaries(engine, run_ids=[r.id]).set_index("key").loc["k"]
    assert (row["first_step"], row["last_step"], row["last"], row["min"], row["max"], row["count"]) == (5, 12, -1.0, -1.0, 9.0, 3)
    with engine.connect() as conn:
        rollup = conn.execute(text("SELECT step_max, total, count, vmin, vmax, wall FROM metric_rollup WHERE run_id = :r AND level = 2"), {"r": r.id}).all()
    assert [tuple(x) for x in rollup] == [(12, 11.0, 3, -1.0, 9.0, 200.0)]  # steps 5-12: one bucket of 16


def test_a_failed_metric_write_raises_and_stores_nothing(engine):
    r = _run(engine)
    with pytest.raises(Exception):
        m.write_metrics(engine, run_id="20990101-000000-none", points=[("a", 1, 1.0, 1.0)])  # no such run: FK
    assert m.read_since(engine, run_id=r.id).empty
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM metric_summary")).scalar() == 0


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
    # narrow buckets over a short step range group the raw points (integer division on both backends)
    short = m.read_series(engine, run_id=r.id, key="train/loss", max_points=n // 2)
    assert short.downsampled and len(short.frame) == n // 2


def test_delete_removes_every_row(engine):
    r = _run(engine)
    m.write_metrics(engine, run_id=r.id, points=[("a", 1, 1.0, 1.0)])
    runs.delete_run_rows(engine, run_id=r.id)
    with engine.connect() as conn:
        for table in ("run", "metric", "metric_summary", "metric_rollup", "event"):
            assert conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() == 0


def test_processes_opening_a_new_store_at_once_all_succeed(home):
    """The first `workbench run`s on a fresh machine race to create the schema; none may fail for it."""
    import subprocess
    import sys

    url = get_settings().database_url
    code = "import sys; from workbench.store import get_engine; get_engine(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate()[1] for p in procs if p.wait() != 0]
    assert not errors, errors[0][-1500:]
    with get_engine(url).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [schema.HEAD]
