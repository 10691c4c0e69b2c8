"""Four trials at once on SQLite and on PostgreSQL: every trial completes and no process logs a lock error (Optuna's
own SQLite storage fails here, optuna#820; a study's Optuna records live in a journal file instead)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.both_backends, pytest.mark.slow]


def test_four_trials_at_once_without_lock_errors(home, tmp_path):
    config = tmp_path / "linreg.yaml"
    config.write_text("task: linreg\nepochs: 4\nsteps_per_epoch: 30\ntrain_batch_size: 16\n")
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {low: 0.001, high: 0.1, log: true}\ntrain_batch_size: {choices: [8, 16, 32]}\n")
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_MAX_CONCURRENT_RUNS": "4"}

    def wb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)

    out = wb("study", "run", str(config), "--space", str(space), "--trials", "8", "--parallel", "4", "--pruner", "none", "--wait")
    assert out.returncode == 0, out.stdout + out.stderr
    shown = json.loads(wb("study", "show", out.stdout.split()[1], "--json").stdout)
    assert sorted(t["state"] for t in shown["trials"]) == ["complete"] * 8
    logs = [*home.glob("studies/*/driver.log"), *home.glob("runs/*/*.log")]
    assert len(logs) >= 9
    locked = [str(p) for p in logs if "locked" in p.read_text(errors="replace").lower()]
    assert not locked, locked
