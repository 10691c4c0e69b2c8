"""Soak: 8 runs train at once while a reader polls like the UI, on SQLite and on PostgreSQL.

All complete, no lock error anywhere (the reader's exceptions, the runs' logs: the journal would retry a lock
error, so the logs are where one shows), and every run's stored points are exactly what its summaries count.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from tests.support.waiting import wait_for
from workbench import api

pytestmark = [pytest.mark.slow, pytest.mark.both_backends]

RUNS = 8
EPOCHS, STEPS = 3, 60
LOCK_ERROR = re.compile(r"database is locked|deadlock|lock timeout|LockNotAvailable|could not obtain lock", re.IGNORECASE)


@pytest.fixture()
def store(store_backend, home, monkeypatch):
    """The backend of this run of the test (the module is marked both_backends: conftest points `home` at it)."""
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_RUNS", str(RUNS))
    monkeypatch.setenv("WORKBENCH_CPU_THREADS", "1")
    reset_settings()
    return store_backend


class UiReader(threading.Thread):
    """Polls every 0.2 s what the dashboard and the runs page read; keeps every exception it meets."""

    def __init__(self, run_ids: list[str]):
        super().__init__(name="ui-reader", daemon=True)
        self.run_ids = run_ids
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.polls = 0

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                api.list_runs()
                for run_id in self.run_ids:
                    run = api.get_run(run_id)
                    api.progress(run)
                    api.series(run_id, "train/loss")
                    api.events(run_id)
                self.polls += 1
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")


def test_eight_runs_at_once_with_a_reader_polling_like_the_ui(store):
    cfg = api.validate_dict({"task": "linreg", "train_batch_size": 16, "learning_rate": 0.05, "epochs": EPOCHS,
                             "steps_per_epoch": STEPS, "step_sleep_s": 0.01})  # fmt: skip
    run_ids: list[str] = []
    reader = UiReader(run_ids)
    reader.start()
    try:
        for i in range(RUNS):
            run_ids.append(api.launch_run(cfg, name=f"soak-{store}-{i}").id)
        assert api.list_runs(statuses=["queued"]) == []  # all eight start at once
        final = ("completed", "failed", "lost", "cancelled")
        wait_for(lambda: all(api.run_status(r) in final for r in run_ids), 150, interval=0.5, what="all runs to end")
    finally:
        reader.stop.set()
        reader.join()
    assert reader.errors == []
    assert reader.polls > 0
    runs = [api.get_run(r) for r in run_ids]
    assert [r.status for r in runs] == ["completed"] * RUNS, [(r.id, r.status, r.error) for r in runs]
    for run_id in run_ids:
        for log in ("train.log", "supervisor.log"):
            path = api.run_dir(run_id) / log
            text = path.read_text() if path.exists() else ""
            assert not LOCK_ERROR.search(text), f"{path}:\n{text[-3000:]}"
            assert "cannot be reached" not in text, f"{path}:\n{text[-3000:]}"
    points = {r: api.metrics_since(r).groupby("key").size().to_dict() for r in run_ids}
    summaries = api.metric_summaries(run_ids)
    expected = {"train/loss": EPOCHS * STEPS, "train/lr": EPOCHS * STEPS, "valid/loss": EPOCHS}
    for run_id in run_ids:
        counts = summaries[summaries.run_id == run_id].set_index("key")["count"].to_dict()
        assert points[run_id] == counts == expected, run_id
