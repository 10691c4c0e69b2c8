"""ctr_stream through the real runner: SIGKILL of the worker mid-day, then resume continues with the right pass."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.waiting import wait_for, wait_status
from workbench import api

pytestmark = pytest.mark.slow


def _last_pass(run_id: str) -> float:
    summary = api.metric_summaries([run_id])
    row = summary[summary.key == "pass/global"]
    return float(row["last"].iloc[0]) if len(row) else 0.0


def _log_says(run_id: str, text: str) -> bool:
    log = api.run_dir(run_id) / "train.log"
    return log.exists() and text in log.read_text(errors="replace")


def _journaled_pass(run_id: str) -> float:
    """The last pass/global in the run's journal: a point is there ~0.5 s after ctx.log (the metric buffer), before
    the store has it; a point still in the buffer dies with a SIGKILLed worker."""
    from workbench.runner.journal import journal_path, read_records

    records, _ = read_records(journal_path(api.run_dir(run_id)), max_bytes=1 << 30)
    passes = [p[2] for r in records if r["t"] == "metrics" for p in r["points"] if p[0] == "pass/global"]
    return max(passes, default=0.0)


def test_sigkill_mid_day_then_resume_continues_after_the_last_checkpoint(home):
    cfg = api.validate_file("configs/ctr_stream/quick.yaml", ["synthetic.examples_per_slice=10000"])
    run = api.launch_run(cfg, name="ctr-kill")
    # checkpoint_per_pass is 3: kill during day 1 once pass 4's points are journaled, before the day ends at pass 6.
    # (The store lags the journal by its sync, ~0.5 s, and a pass takes about half a second on a quiet machine.)
    wait_for(lambda: _journaled_pass(run.id) >= 4, 240, interval=0.02, what="pass 4 to be journaled")
    os.kill(api.get_run(run.id).worker_pid, signal.SIGKILL)
    assert not _log_says(run.id, "pass 6/6 of 20190720"), "the day ended before the kill: the test needs slower passes"
    killed = wait_status(run.id, ("failed",), timeout=60)
    assert killed.exit_signal == signal.SIGKILL

    api.resume_run(run.id)
    done = wait_status(run.id, ("completed", "failed"), timeout=300)
    assert done.status == "completed", (done.error, done.traceback)
    passes = api.metrics_since(run.id)
    order = passes[passes.key == "pass/global"].sort_values("id")["value"].astype(int).tolist()
    restart = next(i for i in range(1, len(order)) if order[i] <= order[i - 1])
    first_attempt, second_attempt = order[:restart], order[restart:]
    assert first_attempt == list(range(1, len(first_attempt) + 1)) and len(first_attempt) >= 4
    # the resumable state after pass 3 is the last one before the kill: pass 4 is trained again, nothing skipped
    assert second_attempt == list(range(4, 13))
    infer_passes = passes[passes.key == "infer/auc"]
    assert len(infer_passes) == len(order)  # every pass, both attempts, was evaluated before training on it
