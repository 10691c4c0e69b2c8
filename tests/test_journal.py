"""The run journal: file format, exactly-once replay, and a store that goes away while a run trains.

Unit tests on tiny data and a fresh SQLite store each; the PostgreSQL tests (slow) stop a real server mid-run.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from tests.support.waiting import wait_for, wait_status
from workbench.runner import journal as journal_mod
from workbench.runner.context import MemoryBackend, MetricBuffer, RunContext
from workbench.runner.journal import JournalWriter, Replayer, read_records, replay
from workbench.runner.store_backend import StoreBackend
from workbench.settings import get_settings
from workbench.store import get_engine
from workbench.store import journal as store_journal
from workbench.store import metrics as metric_store
from workbench.store import runs as run_store


@pytest.fixture()
def engine(home):
    return get_engine(get_settings().database_url)


def _run(engine):  # type: ignore[no-untyped-def]
    from workbench.store.models import RunCreate

    return run_store.create_run(engine, run_in=RunCreate(task="linreg", name="j", monitor_key="valid/loss", monitor_mode="min"))


def _stored_points(engine, run_id: str) -> list[tuple[str, int, float]]:  # type: ignore[no-untyped-def]
    frame = metric_store.read_since(engine, run_id=run_id)
    return sorted(zip(frame.key, frame.step.astype(int), frame.value))


# -- the file ------------------------------------------------------------------------------------------------
def test_append_and_read_back(tmp_path):
    w = JournalWriter(tmp_path / "journal.jsonl")
    assert w.append("metrics", points=[["train/loss", 1, 0.5, 10.0], ["train/loss", 2, 0.1 + 0.2, 11.0]]) == 1
    assert w.append("event", time=12.0, kind="note", message="hé \n two lines") == 2
    w.close()
    records, end = read_records(tmp_path / "journal.jsonl")
    assert [r["seq"] for r in records] == [1, 2]
    assert records[0]["points"][1] == ["train/loss", 2, 0.1 + 0.2, 11.0]  # floats round-trip exactly
    assert records[1]["message"] == "hé \n two lines"
    assert end == (tmp_path / "journal.jsonl").stat().st_size
    assert read_records(tmp_path / "journal.jsonl", after_seq=1)[0] == [records[1]]
    assert read_records(tmp_path / "journal.jsonl", offset=end) == ([], end)
    assert read_records(tmp_path / "missing.jsonl") == ([], 0)


def test_a_torn_last_line_is_not_a_record_and_is_cut_when_reopened(tmp_path):
    path = tmp_path / "journal.jsonl"
    w = JournalWriter(path)
    w.append("phase", text="a")
    w.append("phase", text="b")
    w.close()
    with open(path, "ab") as f:
        f.write(b'{"seq":3,"t":"phase","te')  # a write cut short by a crash
    records, end = read_records(path)
    assert [r["seq"] for r in records] == [1, 2] and end < path.stat().st_size
    w = JournalWriter(path)
    assert w.last_seq == 2
    assert w.append("phase", text="c") == 3
    w.close()
    assert [r["text"] for r in read_records(path)[0]] == ["a", "b", "c"]


def test_seq_continues_after_reopen_and_after_the_store(tmp_path):
    path = tmp_path / "journal.jsonl"
    w = JournalWriter(path)
    for _ in range(3):
        w.append("phase", text=None)
    w.close()
    assert JournalWriter(path).last_seq == 3
    assert JournalWriter(path, start_after=7).last_seq == 7  # the store has more than the file (a lost file)
    long_line = JournalWriter(path)
    long_line.append("metrics", points=[["k", i, float(i), 0.0] for i in range(20_000)])  # one line > 64 KiB
    long_line.close()
    assert JournalWriter(path).last_seq == 4


def test_a_corrupt_line_in_the_middle_is_an_error_that_names_the_file(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"seq":1,"t":"phase","text":null}\n{"seq":2,garbage\n{"seq":3,"t":"phase","text":null}\n')
    with pytest.raises(journal_mod.JournalCorrupt, match="journal.jsonl: the line at byte 34"):
        read_records(path)


# -- replay into the store -----------------------------------------------------------------------------------
def _write_sample(path: Path) -> list[tuple[str, int, float]]:
    w = JournalWriter(path)
    logged = []
    for batch in range(5):
        points = [["train/loss", batch * 10 + i, 1.0 / (batch * 10 + i + 1), 100.0 + i] for i in range(10)]
        w.append("metrics", points=points)
        logged += [(k, s, v) for k, s, v, _ in points]
    w.append("progress", done=50, total=100, unit="steps", started_at=99.0, done_at_start=0)
    w.append("phase", text="validating")
    w.append("event", time=123.0, kind="note", message="hello")
    w.append("ckpt_add", path="checkpoints/a.pt", kind="checkpoint", step=10, epoch=0, metrics={"valid/loss": 0.5},
             size_bytes=3, sha256=None, created_at=1.0, pass_id=None, day=None)  # fmt: skip
    w.append("ckpt_add", path="checkpoints/b.pt", kind="checkpoint", step=20, epoch=1, metrics={}, size_bytes=3,
             sha256=None, created_at=2.0, pass_id=None, day=None)  # fmt: skip
    w.append("ckpt_del", path="checkpoints/a.pt")
    w.close()
    return sorted(logged)


def test_replay_twice_applies_once(engine, tmp_path):
    from workbench.store import checkpoints as ckpt_store
    from workbench.store import events as event_store

    run = _run(engine)
    logged = _write_sample(tmp_path / "journal.jsonl")
    assert replay(engine, run.id, tmp_path) == (11, 11)
    assert replay(engine, run.id, tmp_path) == (0, 11)
    assert _stored_points(engine, run.id) == logged
    assert metric_store.summaries(engine, run_ids=[run.id])["count"].tolist() == [50]
    stored = run_store.get_run(engine, run_id=run.id)
    assert (stored.progress_done, stored.progress_total, stored.phase, stored.journal_seq) == (50, 100, "validating", 11)
    assert [c.path for c in ckpt_store.list_checkpoints(engine, run_id=run.id)] == ["checkpoints/b.pt"]
    assert [e.message for e in event_store.list_events(engine, run_id=run.id) if e.kind == "note"] == ["hello"]


def test_two_appliers_of_one_journal_store_each_record_once(engine, tmp_path):
    """The worker's sync thread and a `workbench sync` beside it: the journal_seq compare-and-set keeps them apart."""
    run = _run(engine)
    path = tmp_path / "journal.jsonl"
    w = JournalWriter(path)
    first, second = Replayer(engine, run.id, path), Replayer(engine, run.id, path)
    logged = []
    for i in range(30):
        w.append("metrics", points=[["k", i, float(i), 0.0]])
        logged.append(("k", i, float(i)))
        (first if i % 3 else second).apply_pending()
    w.close()
    first.apply_pending()
    second.apply_pending()
    assert _stored_points(engine, run.id) == logged
    assert store_journal.journal_seq(engine, run.id) == 30


def test_a_batch_that_fails_stores_nothing_of_itself(engine, tmp_path):
    run = _run(engine)
    path = tmp_path / "journal.jsonl"
    w = JournalWriter(path)
    w.append("metrics", points=[["k", 1, 1.0, 0.0]])
    w.append("ckpt_add", path="x", kind="not-a-kind", step=1, epoch=None, metrics={}, size_bytes=0, sha256=None,
             created_at=0.0, pass_id=None, day=None)  # fmt: skip  (the kind's CHECK constraint refuses it)
    w.close()
    with pytest.raises(Exception, match="ck_ckpt_kind|CHECK constraint"):
        Replayer(engine, run.id, path).apply_pending()
    assert _stored_points(engine, run.id) == [] and store_journal.journal_seq(engine, run.id) == 0


def test_other_ranks_see_the_checkpoints_the_journal_holds_beyond_the_store(engine, tmp_path):
    from workbench.runner.store_backend import stored_checkpoints

    run = _run(engine)
    _write_sample(tmp_path / "journal.jsonl")  # adds a and b, deletes a; nothing applied yet
    assert [c.path for c in stored_checkpoints(engine, run.id)] == []
    assert [c.path for c in stored_checkpoints(engine, run.id, tmp_path)] == ["checkpoints/b.pt"]
    replay(engine, run.id, tmp_path)
    view = stored_checkpoints(engine, run.id, tmp_path)
    assert [(c.path, c.step, c.epoch) for c in view] == [("checkpoints/b.pt", 20, 1)] and view[0].id is not None


# -- a store that goes away while the run trains -------------------------------------------------------------
class _Outage:
    """Makes store_journal.apply_records raise like an unreachable PostgreSQL while `down` is set."""

    def __init__(self, monkeypatch):  # type: ignore[no-untyped-def]
        self.down = threading.Event()
        self.failures = 0
        real = store_journal.apply_records

        def apply_records(*args, **kwargs):  # type: ignore[no-untyped-def]
            if self.down.is_set():
                self.failures += 1
                raise OperationalError("INSERT ...", {}, ConnectionRefusedError("connection refused"))
            return real(*args, **kwargs)

        monkeypatch.setattr(store_journal, "apply_records", apply_records)


def _context(engine, run_id: str, run_dir: Path, **backend_args) -> tuple[RunContext, StoreBackend]:  # type: ignore[no-untyped-def]
    backend = StoreBackend(engine, run_id, run_dir, sync_interval=0.05, **backend_args)
    ctx = RunContext(run_id=run_id, run_dir=run_dir, backend=backend, monitor=("valid/loss", "min"), keep_ckpt=2, flush_interval=0.05)
    return ctx, backend


def test_training_goes_on_through_a_store_outage_and_loses_nothing(engine, tmp_path, monkeypatch):
    from workbench.store import checkpoints as ckpt_store
    from workbench.store import events as event_store

    run = _run(engine)
    outage = _Outage(monkeypatch)
    ctx, backend = _context(engine, run.id, tmp_path / "run", outage_warn_s=0.2, end_wait_s=30)
    logged = []
    for step in range(1, 201):
        if step == 50:
            outage.down.set()
        ctx.log({"train/loss": 1.0 / step, "train/lr": 0.1}, step)
        ctx.progress(step, 200)
        logged += [("train/loss", step, 1.0 / step), ("train/lr", step, 0.1)]
        if step % 40 == 0:
            ctx.checkpoints.save({"step": step}, step=step, config={}, metrics={"valid/loss": 1.0 / step if step != 80 else 0.0})
        time.sleep(0.002)
    # training finished while the store was still away: nothing waited on it
    wait_for(lambda: outage.failures >= 3, 10, what="the sync thread to retry")
    assert outage.down.is_set() and backend.sync.unapplied() > 0
    outage.down.clear()
    assert ctx.close() == 0
    assert _stored_points(engine, run.id) == sorted(logged)
    summary = metric_store.summaries(engine, run_ids=[run.id]).set_index("key")["count"]
    assert summary.to_dict() == {"train/loss": 200, "train/lr": 200}
    stored = run_store.get_run(engine, run_id=run.id)
    assert (stored.progress_done, stored.progress_total) == (200, 200)
    # retention ran while the store was away: the rows are what is on disk (the last 2 and the best, step 80)
    rows = sorted(c.path for c in ckpt_store.list_checkpoints(engine, run_id=run.id))
    assert rows == sorted(str(p.relative_to(tmp_path / "run")) for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert [c.step for c in ckpt_store.list_checkpoints(engine, run_id=run.id)] == [80, 160, 200]
    outage_events = [e.message for e in event_store.list_events(engine, run_id=run.id) if e.kind == "store outage"]
    assert len(outage_events) == 1 and "records were replayed" in outage_events[0], outage_events


def test_a_store_that_never_comes_back_leaves_the_records_in_the_journal_for_sync(engine, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from workbench.cli import app

    run = _run(engine)
    run_dir = get_settings().runs_dir / run.id
    outage = _Outage(monkeypatch)
    ctx, _ = _context(engine, run.id, run_dir, end_wait_s=0.3)
    outage.down.set()
    for step in range(1, 31):
        ctx.log({"train/loss": float(step)}, step)
    ctx.event("note", "said while the store was away")
    left = ctx.close()
    assert left >= 2  # the points and the event (and the progress, if any) are only in the journal
    assert _stored_points(engine, run.id) == []
    outage.down.clear()
    first = CliRunner().invoke(app, ["sync", run.id])
    assert first.exit_code == 0 and f"stored {left} journal records" in first.output, first.output
    again = CliRunner().invoke(app, ["sync", run.id])
    assert again.exit_code == 0 and "nothing to store" in again.output
    assert _stored_points(engine, run.id) == [("train/loss", s, float(s)) for s in range(1, 31)]


def test_a_journal_file_deleted_under_a_run_ends_it_unstored_instead_of_spinning(engine, tmp_path):
    """The run's folder deleted while it trains (the journal with it): closing applies what it can, backs off, and
    reports the records it could not store (a loop that retried at once spun a core for as long as it lived)."""
    run = _run(engine)
    ctx, _ = _context(engine, run.id, tmp_path / run.id, end_wait_s=1.0)
    ctx.log({"train/loss": 1.0}, 1)
    (tmp_path / run.id / journal_mod.JOURNAL_NAME).unlink()
    for step in range(2, 6):
        ctx.log({"train/loss": float(step)}, step)
    result: list[int] = []
    closer = threading.Thread(target=lambda: result.append(ctx.close()), daemon=True)
    closer.start()
    closer.join(120)  # a liveness guard, not a timing assertion: the old loop never returned
    assert not closer.is_alive() and result and result[0] >= 1


def test_a_failed_metric_flush_keeps_its_points():
    class Flaky(MemoryBackend):
        fail = True

        def write_metrics(self, points):  # type: ignore[no-untyped-def]
            if self.fail:
                raise OSError("disk full")
            super().write_metrics(points)

    backend = Flaky()
    buffer = MetricBuffer(backend, interval=3600)
    buffer._points = [("k", 1, 1.0, 0.0)]  # what add() would have put there, without starting the flush thread
    with pytest.raises(OSError):
        buffer.flush()
    buffer._points.append(("k", 2, 2.0, 0.0))
    backend.fail = False
    buffer.flush()
    assert backend.series("k") == [(1, 1.0), (2, 2.0)]


def test_a_runs_first_points_reach_the_store_without_waiting_an_interval(engine, tmp_path):
    """The metric flush and the journal sync wait an hour between rounds here, and the first point still reaches
    the store while the run trains (the dashboard's first chart); the rest is stored by close()."""
    run = _run(engine)
    backend = StoreBackend(engine, run.id, tmp_path, sync_interval=3600)
    ctx = RunContext(run_id=run.id, run_dir=tmp_path, backend=backend, monitor=("valid/loss", "min"), keep_ckpt=2, flush_interval=3600)
    ctx.log({"train/loss": 1.0}, 1)
    wait_for(lambda: _stored_points(engine, run.id) == [("train/loss", 1, 1.0)], timeout=60, what="the first point in the store")
    ctx.log({"train/loss": 0.5}, 2)
    assert ctx.close() == 0
    assert _stored_points(engine, run.id) == [("train/loss", 1, 1.0), ("train/loss", 2, 0.5)]


def test_a_resumed_attempt_continues_the_seq_and_replays_what_the_last_one_left(engine, tmp_path, monkeypatch):
    run = _run(engine)
    outage = _Outage(monkeypatch)
    ctx, _ = _context(engine, run.id, tmp_path, end_wait_s=0.1)
    outage.down.set()
    ctx.log({"k": 1.0}, 1)
    assert ctx.close() > 0
    outage.down.clear()
    ctx, backend = _context(engine, run.id, tmp_path)  # the next attempt: replays first, then appends after it
    assert _stored_points(engine, run.id) == [("k", 1, 1.0)]
    ctx.log({"k": 2.0}, 2)
    assert ctx.close() == 0
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert _stored_points(engine, run.id) == [("k", 1, 1.0), ("k", 2, 2.0)]
    assert backend.sync.unapplied() == 0


# -- PostgreSQL stopped under a real run ---------------------------------------------------------------------
@pytest.fixture()
def postgres(home, monkeypatch):
    """A PostgreSQL server of this test's own as the store of its runs (WORKBENCH_DB_URL): the test stops it, so it
    cannot be the session's shared one (conftest's postgres_server)."""
    from tests.support.postgres import PostgresServer, require
    from workbench.settings import reset_settings
    from workbench.store import dispose_engines

    require()
    server = PostgresServer()
    server.start()
    monkeypatch.setenv("WORKBENCH_DB_URL", server.create_database())
    reset_settings()
    dispose_engines()
    yield server
    dispose_engines()
    server.destroy()


def _linreg(**overrides):  # type: ignore[no-untyped-def]
    from workbench import api

    return api.validate_dict({"task": "linreg", "train_batch_size": 16, "learning_rate": 0.05, **overrides})


def _journal_points(run_id: str) -> list[tuple[str, int, float]]:
    """Every point the run logged, as its journal has them."""
    from workbench import api

    records, _ = read_records(api.run_dir(run_id) / "journal.jsonl", max_bytes=1 << 30)
    return sorted((k, s, v) for r in records if r["t"] == "metrics" for k, s, v, _ in r["points"])


def _store_points(run_id: str) -> list[tuple[str, int, float]]:
    from workbench import api

    frame = api.metrics_since(run_id)
    return sorted(zip(frame.key, frame.step.astype(int), frame.value))


def _wait_for_step(run_id: str, step: int) -> None:
    from workbench import api

    wait_for(lambda: (r := api.get_run(run_id)).status == "running" and (r.progress_done or 0) >= step, 120, what=f"step {step}")


@pytest.mark.slow
def test_postgres_stopped_for_20_s_mid_run_every_point_arrives_exactly_once(postgres, monkeypatch):
    from workbench import api
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_STORE_OUTAGE_WARN_S", "5")
    reset_settings()
    epochs, steps = 8, 100
    run = api.launch_run(_linreg(epochs=epochs, steps_per_epoch=steps, step_sleep_s=0.05))  # ~40 s of steady points
    _wait_for_step(run.id, 100)
    postgres.stop()
    time.sleep(20)
    postgres.start()
    done = wait_status(run.id, ("completed", "failed", "lost", "cancelled"), timeout=240)
    assert done.status == "completed", (done.error, api.log_tail(run.id))
    logged = _journal_points(run.id)
    assert len(logged) == epochs * steps * 2 + epochs  # train/loss and train/lr per step, valid/loss per epoch
    assert _store_points(run.id) == logged  # every point, once, with its value
    counts = api.metric_summaries([run.id]).set_index("key")["count"].to_dict()
    assert counts == {"train/loss": epochs * steps, "train/lr": epochs * steps, "valid/loss": epochs}
    log = (api.run_dir(run.id) / "train.log").read_text()
    assert "the store cannot be reached" in log
    outage = [e.message for e in api.events(run.id) if e.kind == "store outage"]
    assert len(outage) == 1 and "records were replayed" in outage[0], outage
    away = int(outage[0].split("unreachable for ")[1].split(" s")[0])
    assert away >= 19  # the run's own measure of the outage
    assert api.get_run(run.id).journal_seq == json.loads((api.run_dir(run.id) / "journal.jsonl").read_text().splitlines()[-1])["seq"]


@pytest.mark.slow
def test_a_run_the_store_outlasts_is_not_completed_and_loses_nothing(postgres, monkeypatch):
    """The store stays away past the end of the run and the worker's wait: the run ends `failed`, and its
    supervisor stores the journal's records once the store is back."""
    import psutil

    from workbench import api
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_STORE_END_WAIT_S", "10")
    reset_settings()
    run = api.launch_run(_linreg(epochs=2, steps_per_epoch=100, step_sleep_s=0.03))
    _wait_for_step(run.id, 60)
    worker = psutil.Process(api.get_run(run.id).worker_pid)
    postgres.stop()

    def worker_gone() -> bool:
        try:
            return worker.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(worker_gone, 90, what="the worker to give up on the store")
    assert "could not be stored" in (api.run_dir(run.id) / "train.log").read_text()
    postgres.start()  # too late for the worker; its supervisor records how the run ended
    done = wait_status(run.id, ("completed", "failed", "lost", "cancelled"), timeout=60)
    assert done.status == "failed" and done.exit_code == journal_mod.EXIT_UNSTORED, (done.status, done.error)
    assert "could not record its end" in done.error and "records left in its journal were stored" in done.error, done.error
    logged = _journal_points(run.id)
    assert len(logged) == 2 * 100 * 2 + 2
    assert _store_points(run.id) == logged
    assert api.sync_run(run.id).applied == 0  # nothing left for `workbench sync`
    assert _store_points(run.id) == logged


@pytest.mark.slow
def test_the_supervisor_stores_what_a_killed_worker_journaled(home):
    import os
    import signal

    from workbench import api

    run = api.launch_run(_linreg(epochs=200, step_sleep_s=0.01))
    _wait_for_step(run.id, 50)
    os.kill(api.get_run(run.id).worker_pid, signal.SIGKILL)
    done = wait_status(run.id, ("failed", "lost", "completed"))
    assert done.status == "failed" and "SIGKILL" in done.error and "were stored afterwards" in done.error, done.error
    assert _store_points(run.id) == _journal_points(run.id)
