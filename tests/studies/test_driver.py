"""The study driver's ask/tell loop over a fake platform whose 'runs' train one validation per tick and report
through the real TrialReporter (the trial side of pruning), on a real Optuna journal file."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from workbench.config.io import ConfigError, FieldError
from workbench.studies import optuna_io
from workbench.studies.driver import StudyDriver, TrialOutcome
from workbench.studies.options import StudyOptions
from workbench.studies.space import Range

EPOCHS = 6


@dataclass
class FakeRun:
    config: dict
    number: int
    epoch: int = 0
    best: float | None = None
    status: str = "running"


@dataclass
class FakePlatform:
    path: object
    study_id: str
    runs: dict[str, FakeRun] = field(default_factory=dict)
    lose: set[int] = field(default_factory=set)  # trial numbers whose run gets lost

    invalid: set[int] = field(default_factory=set)  # trial numbers whose sampled config fails validation

    def launch_trial(self, config, trial_number):
        if trial_number in self.invalid:
            raise ConfigError([FieldError("epochs_warmup", "epochs_warmup + epochs_ending exceed epochs")])
        run_id = f"run{len(self.runs)}"
        self.runs[run_id] = FakeRun(config, trial_number)
        return run_id

    def outcome(self, run_id, objective, direction):
        run = self.runs[run_id]
        return None if run.status == "running" else TrialOutcome(run.status, run.best)

    def cancel(self, run_id):
        self.runs[run_id].status = "cancelled"

    def tick(self):
        """Every running run validates once: value grows with epochs, best near learning_rate = 0.01."""
        for run in self.runs.values():
            if run.status != "running":
                continue
            if run.number in self.lose:
                run.status = "lost"
                continue
            run.epoch += 1
            quality = 1.0 - abs(math.log10(run.config["learning_rate"]) + 2.0) / 3.0
            value = quality * (1 - 0.5 ** run.epoch)
            run.best = value if run.best is None else max(run.best, value)
            reporter = optuna_io.TrialReporter(self.path, self.study_id, run.number)
            if reporter.report({"valid/mrr@20": value, "train/loss": 1.0}):
                run.status = "pruned"
            elif run.epoch == EPOCHS:
                run.status = "completed"


def _driver(tmp_path, options, platform=None):
    path = optuna_io.journal_path(tmp_path, "s1")
    try:
        optuna_io.load(path, "s1")
    except Exception:
        optuna_io.create(path, "s1", direction="maximize", objective="valid/mrr@20", options=options)
    from workbench.studies.options import make_sampler

    space = {"learning_rate": Range(1e-4, 0.1, log=True)}
    study = optuna_io.load(path, "s1", sampler=make_sampler(options, space))
    platform = platform or FakePlatform(path, "s1")
    driver = StudyDriver(study, base={"task": "x", "learning_rate": 0.001}, space=space, options=options, objective="valid/mrr@20", platform=platform)
    return driver, platform


def _run(driver, platform, limit=500):
    for _ in range(limit):
        if not driver.step():
            return
        platform.tick()
    raise AssertionError("the study did not finish")


def test_study_runs_its_budget_with_pruned_and_completed_trials(tmp_path):
    from optuna.trial import TrialState

    options = StudyOptions(n_trials=16, parallel=3, seed=1, n_startup_trials=3, n_warmup_steps=1)
    driver, platform = _driver(tmp_path, options)
    _run(driver, platform)
    trials = driver.study.get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 16 and TrialState.RUNNING not in states
    assert states.count(TrialState.PRUNED) >= 1 and states.count(TrialState.COMPLETE) >= 3
    best_completed = max(t.value for t in trials if t.state == TrialState.COMPLETE)
    assert driver.study.best_value == best_completed
    assert max(len([r for r in platform.runs.values() if r.status == "running"]), 0) == 0


def test_an_invalid_sample_fails_its_trial_and_a_lost_run_is_retried_once(tmp_path):
    from optuna.trial import TrialState

    options = StudyOptions(n_trials=4, parallel=2, seed=3, pruner="none")
    driver, platform = _driver(tmp_path, options)
    platform.lose = {0}
    platform.invalid = {1}
    _run(driver, platform)
    trials = driver.study.get_trials()
    lost = trials[0]
    assert lost.state == TrialState.FAIL and lost.user_attrs["requeued"]
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 0)
    assert retry.params == lost.params
    assert driver.counted() == 4  # the lost trial is not counted: its retry is
    assert trials[1].state == TrialState.FAIL and "invalid configuration" in trials[1].user_attrs["error"]


def test_a_new_driver_resumes_where_a_killed_one_stopped(tmp_path):
    from optuna.trial import TrialState

    options = StudyOptions(n_trials=5, parallel=2, seed=5, pruner="none")
    first, platform = _driver(tmp_path, options)
    first.step()
    platform.tick()
    first.study.ask()  # asked, then the driver "died" before launching it
    second, _ = _driver(tmp_path, options, platform)
    _run(second, platform)
    trials = second.study.get_trials()
    assert len(trials) == 5
    orphan = trials[2]
    assert orphan.state == TrialState.FAIL and "before this trial's run was launched" in orphan.user_attrs["error"]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4


def test_report_frames_agree_with_optuna(tmp_path):
    from workbench.studies import report

    options = StudyOptions(n_trials=8, parallel=2, seed=2, n_startup_trials=2)
    driver, platform = _driver(tmp_path, options)
    _run(driver, platform)
    trials = report.trials_frame(driver.study)
    assert len(trials) == 8 and "params.learning_rate" in trials.columns
    assert set(trials["run_id"]) == set(platform.runs)
    best = report.best_trial(trials, "maximize")
    assert best["value"] == driver.study.best_value and best["number"] == driver.study.best_trial.number
    history = report.best_so_far(trials, "maximize")
    assert history["best"].is_monotonic_increasing and history["best"].iloc[-1] == driver.study.best_value
    steps = report.intermediate_frame(driver.study)
    assert steps.groupby("number")["validation"].max().max() == EPOCHS
    assert report.importances(driver.study) == {"learning_rate": pytest.approx(1.0)}


def test_study_charts_build_valid_specs(tmp_path):
    from workbench.studies import report
    from workbench.ui import study_charts

    options = StudyOptions(n_trials=6, parallel=2, seed=4, n_startup_trials=2)
    driver, platform = _driver(tmp_path, options)
    _run(driver, platform)
    trials = report.trials_frame(driver.study)
    charts = [
        study_charts.history_chart(trials, report.best_so_far(trials, "maximize"), "valid/mrr@20"),
        study_charts.intermediate_chart(report.intermediate_frame(driver.study), "valid/mrr@20"),
        study_charts.parallel_chart(trials, "valid/mrr@20"),
        study_charts.importance_chart(report.importances(driver.study)),
        *study_charts.slice_charts(trials, "valid/mrr@20"),
    ]
    for chart in charts:
        spec = chart.to_dict()  # validates against the Vega-Lite schema
        assert spec.get("datasets"), "a chart without data"
