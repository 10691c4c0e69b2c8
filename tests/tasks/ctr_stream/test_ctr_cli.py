"""The quick preset through the real CLI (supervisor, worker, store): it learns, its outputs are listed, and
evaluating its best checkpoint on the stream's last day works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def wb(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def test_quick_preset_through_the_cli_learns_and_evaluates(home):
    out = wb("run", "configs/ctr_stream/quick.yaml", "--wait", "--name", "ctr-quick", home=home)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run_id = json.loads(wb("list", "--json", home=home).stdout)[0]["id"]
    shown = json.loads(wb("show", run_id, "--json", home=home).stdout)
    assert shown["metrics"]["infer/auc"]["max"] > 0.65  # well above chance
    assert shown["metrics"]["pass/global"]["last"] == 12
    kinds = {c["kind"] for c in shown["checkpoints"]}
    assert {"checkpoint", "delta", "base", "batch"} <= kinds

    ev = wb("eval", run_id, "--json", home=home)
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    metrics = json.loads(ev.stdout)["metrics"]
    assert metrics["test/auc"] > 0.6 and metrics["test/examples"] == 24000
