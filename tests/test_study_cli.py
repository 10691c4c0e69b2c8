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

    assert api.get_study(study_id).best_value == pytest.approx(best["value"])  # the store's view agrees with Optuna's
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


def test_study_page_and_new_run_study_section(home, tmp_path):
    """AppTest: a finished study's page shows its charts and trials; the New run form starts a study from marked
    settings, and reports a bad space and a bad config at once."""
    from streamlit.testing.v1 import AppTest

    from workbench import api

    config, space = _files(tmp_path)
    out = wb("study", "run", str(config), "--space", str(space), "--trials", "3", "--parallel", "1", "--pruner", "none", "--wait", home=home)
    assert out.returncode == 0, out.stderr
    study_id = out.stdout.split()[1]

    at = AppTest.from_file(str(ROOT / "pages" / "study.py"), default_timeout=60)
    at.query_params["study"] = study_id
    at.run()
    assert not at.exception
    assert [m.value for m in at.metric][:2] == ["completed", "3 / 3"]
    assert len(at.get("vega_lite_chart")) + len(at.get("arrow_vega_lite_chart")) >= 3
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 3

    at = AppTest.from_file(str(ROOT / "pages" / "study.py"), default_timeout=60)
    at.query_params["study"] = "no-such-study"
    at.run()
    assert any("No study" in e.value for e in at.error)



def test_new_run_form_starts_a_study_or_reports_every_problem(home):
    """AppTest: settings marked for search in the New run form start a study; a bad space is reported with its path."""
    import pandas as pd
    from streamlit.testing.v1 import AppTest

    from workbench import api

    def form() -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)  # the app: Start study switches pages
        at.session_state["task_picker"] = "linreg"
        at.run()
        return at

    def start(at: AppTest, rows: list[dict]) -> AppTest:
        at.session_state["study_rows_linreg"] = pd.DataFrame(rows, columns=["setting", "low", "high", "log", "step", "choices"])
        at.session_state["study_table_generation_linreg"] = 1
        at.run()
        next(b for b in at.button if b.label == "Start study").click().run()
        return at

    at = start(form(), [{"setting": "learning_rate", "low": 0.5, "high": 0.01}, {"setting": "learner", "choices": "adam, nadam"}])
    assert not at.exception
    shown = "\n".join(e.value for e in at.error)
    assert "space.learning_rate: low (0.5) is greater than high (0.01)" in shown and "space.learner.choices.1" in shown
    assert api.list_studies() == []

    at = form()
    next(b for b in at.button if b.label.startswith("Suggest ranges")).click().run()
    suggested = at.session_state["study_rows_linreg"]
    assert {"train_batch_size", "learning_rate", "stopping_step"} <= set(suggested["setting"])

    at = start(form(), [{"setting": "learning_rate", "low": 0.001, "high": 0.1, "log": True}])
    assert not at.exception and not at.error
    (study,) = api.list_studies()
    assert at.query_params["study"] == study.id  # the Study page of the new study
    assert study.task == "linreg" and study.space == {"learning_rate": {"low": 0.001, "high": 0.1, "log": True}}
    api.cancel_study(study.id)
    wait_for(lambda: api.get_study(study.id).status == "cancelled", 120, what="the study to stop")
