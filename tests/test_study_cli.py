"""Studies end to end on the tiny linreg task: the CLI starts a study whose trials are ordinary runs; the pruner stops
some trials inside their run (status `pruned`, checkpoint kept); the best trial is the best completed one; promote
round-trips; a study whose driver is SIGKILLed resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

SPACE = """\
learning_rate: {low: 0.0001, high: 0.3, log: true}
"""


def wb(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_MAX_CONCURRENT_RUNS": "2"}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "linreg.yaml"
    config.write_text("task: linreg\nepochs: 6\nsteps_per_epoch: 10\ntrain_batch_size: 16\n")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return config, space


def test_a_study_runs_trials_as_runs_prunes_some_and_promotes_the_best(home, tmp_path):
    config, space = _files(tmp_path)
    out = wb("study", "run", str(config), "--space", str(space), "--trials", "8", "--parallel", "2", "--seed", "3",
             "--pruner", "median", "--wait", home=home)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    study_id = out.stdout.split()[1]
    shown = json.loads(wb("study", "show", study_id, "--json", home=home).stdout)
    trials = shown["trials"]
    states = sorted(t["state"] for t in trials)
    assert len(trials) == 8 and "running" not in states
    assert states.count("pruned") >= 1 and states.count("complete") >= 3, states

    runs = {r["id"]: r for r in json.loads(wb("list", "--json", home=home).stdout)}
    for t in trials:  # every trial is an ordinary run, its status the trial's state
        run = runs[t["run_id"]]
        assert run["study_id"] == study_id and run["trial_number"] == t["number"]
        assert run["status"] == {"complete": "completed", "pruned": "pruned"}[t["state"]]
    pruned = next(t for t in trials if t["state"] == "pruned")
    ckpts = json.loads(wb("show", pruned["run_id"], "--json", home=home).stdout)["checkpoints"]
    assert ckpts, "a pruned trial keeps its checkpoint"

    completed = [t for t in trials if t["state"] == "complete"]
    best = min(completed, key=lambda t: t["value"])
    assert shown["best"]["number"] == best["number"] and shown["best"]["value"] == pytest.approx(best["value"])
    # the trial's value is its run's best valid/loss
    summary = json.loads(wb("show", best["run_id"], "--json", home=home).stdout)["metrics"]["valid/loss"]
    assert best["value"] == pytest.approx(summary["min"])

    promoted = tmp_path / "best.yaml"
    assert wb("study", "promote", study_id, "--out", str(promoted), home=home).returncode == 0
    assert wb("validate", str(promoted), home=home).returncode == 0
    from workbench import api

    assert api.to_dict(api.validate_file(promoted)) == api.to_dict(api.run_config(best["run_id"]))

    listed = json.loads(wb("study", "list", "--json", home=home).stdout)
    assert listed[0]["id"] == study_id and listed[0]["best"] == pytest.approx(best["value"]) and listed[0]["status"] == "completed"


def test_a_study_whose_driver_was_killed_resumes(home, tmp_path):
    config, space = _files(tmp_path)
    out = wb("study", "run", str(config), "--space", str(space), "--trials", "4", "--parallel", "1", "--pruner", "none",
             "--set", "step_sleep_s=0.02", "--detach", home=home)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    study_id = out.stdout.split()[1]

    def shown() -> dict:
        return json.loads(wb("study", "show", study_id, "--json", home=home).stdout)

    first = wait_for(lambda: (s := shown())["trials"] and s, 120, what="the first trial")
    os.kill(first["driver_pid"], signal.SIGKILL)
    wait_for(lambda: not shown()["driver_running"], 30, what="the driver to be gone")
    assert shown()["status"] == "running"  # not finished: resumable
    resumed = wb("study", "resume", study_id, home=home)
    assert resumed.returncode == 0, resumed.stderr
    done = wait_for(lambda: (s := shown())["status"] == "completed" and s, 300, what="the study to complete")
    states = [t["state"] for t in done["trials"]]
    assert len(states) == 4 and all(s == "complete" for s in states), states
