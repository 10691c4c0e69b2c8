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


def test_sigkill_mid_day_then_resume_continues_after_the_last_checkpoint(home):
    cfg = api.validate_file("configs/ctr_stream/quick.yaml", ["synthetic.examples_per_slice=5000"])
    run = api.launch_run(cfg, name="ctr-kill")
    # checkpoint_per_pass is 3: kill during day 1 after pass 4, before the day ends at pass 6
    wait_for(lambda: _last_pass(run.id) >= 4, 240, interval=0.1, what="pass 4 to finish")
    assert _last_pass(run.id) < 6, "the day ended before the kill: the test needs slower passes"
    os.kill(api.get_run(run.id).worker_pid, signal.SIGKILL)
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
