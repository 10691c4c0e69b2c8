"""Studies: automatic hyper-parameter search with Optuna, each trial an ordinary run (Dashboard, Compare,
Checkpoints and the CLI work on trials unchanged)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from workbench.api.base import engine
from workbench.api.configs import TASKS
from workbench.api.checkpoints import checkpoints
from workbench.api.lineage import fork_run
from workbench.api.runs import launch_run, run_config
from workbench.config.io import ConfigError, FieldError, config_to_dict, parse_config
from workbench.runner import study_driver
from workbench.store import studies as study_store
from workbench.store.studies import StudyCreate, StudyRead, StudyStatus, StudyUpdate
from workbench.studies import optuna_io, report
from workbench.studies.options import StudyOptions, check_options
from workbench.studies.space import (
    SearchSpace,
    apply_params,
    example_space_yaml,
    parse_space,
    searchable_paths,
    space_from_yaml,
    space_to_dict,
    suggested_space,
)

if TYPE_CHECKING:
    import pandas as pd


def space_example(task: str) -> str:
    """A commented SPACE.yaml with the guide's ranges for the task's settings."""
    return example_space_yaml(TASKS[task].config_cls())


def searchable_settings(task: str) -> list[str]:
    """The settings of a task a study can search (numbers, enums, booleans; nested ones dotted)."""
    return searchable_paths(TASKS[task].config_cls)


def suggest_ranges(base: BaseModel, paths: list[str] | None = None) -> dict[str, Any]:
    """The guide's recommended ranges for the given settings (all it covers by default), as SPACE.yaml mappings."""
    return space_to_dict(suggested_space(base, paths))


def check_study(base: BaseModel, space: dict[str, Any] | str, options: StudyOptions) -> SearchSpace:
    """The parsed space; raises ConfigError with every problem of the space and the options at once."""
    errors: list[FieldError] = []
    parsed: SearchSpace = {}
    try:
        parsed = space_from_yaml(space, base) if isinstance(space, str) else parse_space(space, base)
    except ConfigError as exc:
        errors.extend(exc.errors)
    objective, _ = _objective(base, options)
    if not objective:
        errors.append(FieldError("objective", "this task monitors no metric: name one (e.g. valid/mrr@20)"))
    errors.extend(check_options(options, parsed))
    if errors:
        raise ConfigError(errors, "study")
    return parsed


def _objective(base: BaseModel, options: StudyOptions) -> tuple[str, str]:
    key, mode = TASKS[base.task].monitor(base)  # type: ignore[attr-defined]
    objective = options.objective or key
    direction = options.direction or ("maximize" if mode == "max" else "minimize")
    return objective, direction


def start_study(base: BaseModel, space: dict[str, Any] | str, options: StudyOptions, *, name: str | None = None) -> StudyRead:
    """Create a study and start its driver in the background. Every trial config is the base plus sampled values and
    passes the same validation as a hand-made run."""
    parsed = check_study(base, space, options)
    objective, direction = _objective(base, options)
    task = base.task  # type: ignore[attr-defined]
    eng = engine()
    study = study_store.create_study(
        eng,
        study_in=StudyCreate(
            name=name or f"{task} study", task=task, base_config=config_to_dict(base), space=space_to_dict(parsed),
            options=options.model_dump(mode="json"), objective=objective, direction=direction,
        ),
    )  # fmt: skip
    optuna_io.create(optuna_io.journal_path(study_driver.studies_dir(), study.id), study.id, direction=direction, objective=objective, options=options)
    study_driver.start(eng, study.id)
    return get_study(study.id)


def list_studies(limit: int = 200) -> list[StudyRead]:
    return study_store.list_studies(engine(), limit=limit)


def get_study(study_id: str) -> StudyRead:
    return study_store.get_study(engine(), study_id=study_id)


def driver_running(study: StudyRead) -> bool:
    return study_driver.driver_alive(study)


@dataclass
class StudyReport:
    trials: pd.DataFrame  # number, state, value, run_id, duration_s, error, params.<path>...
    steps: pd.DataFrame  # number, state, validation, value
    history: pd.DataFrame  # number, value, best
    best: dict[str, Any] | None
    importances: dict[str, float]


def study_report(study_id: str, *, with_importances: bool = True) -> StudyReport:
    study = get_study(study_id)
    optuna_study = optuna_io.load(optuna_io.journal_path(study_driver.studies_dir(), study.id), study.id)
    trials = report.trials_frame(optuna_study)
    return StudyReport(
        trials=trials,
        steps=report.intermediate_frame(optuna_study),
        history=report.best_so_far(trials, study.direction),
        best=report.best_trial(trials, study.direction),
        importances=report.importances(optuna_study) if with_importances else {},
    )


def cancel_study(study_id: str) -> str:
    """Stop a study: no new trials; running trials checkpoint and stop; the study ends `cancelled`."""
    study = get_study(study_id)
    if study.status != StudyStatus.RUNNING:
        return str(study.status)
    study_store.update_study(engine(), study_id=study.id, study_in=StudyUpdate(cancel_requested=True))
    if not driver_running(study):
        study_driver.start(engine(), study.id)  # a driver is needed to stop the trials and record the end
    return "cancel requested"


def resume_study(study_id: str) -> StudyRead:
    """Start a new driver for a study whose driver died (or that failed): running trials are collected, trials that
    died are marked failed or queued again, and the budget goes on."""
    study = get_study(study_id)
    if study.status in (StudyStatus.COMPLETED, StudyStatus.CANCELLED):
        raise ValueError(f"study {study.id} is {study.status}; nothing to resume")
    if study.status == StudyStatus.RUNNING and driver_running(study):
        raise ValueError(f"study {study.id} is running and its driver (pid {study.driver_pid}) is alive")
    study_store.update_study(engine(), study_id=study.id, study_in=StudyUpdate(status=StudyStatus.RUNNING, error=None))
    study_driver.start(engine(), study.id)
    return get_study(study.id)


def trial_config(study_id: str, trial: int | None = None) -> BaseModel:
    """A trial's config (the best trial's by default): the base config with the trial's values, validated."""
    study = get_study(study_id)
    rep = study_report(study.id, with_importances=False)
    if trial is None:
        if rep.best is None:
            raise ValueError(f"study {study.id} has no completed trial yet")
        trial = int(rep.best["number"])
    rows = rep.trials[rep.trials["number"] == trial]
    if rows.empty:
        raise ValueError(f"study {study.id} has no trial {trial}")
    row = rows.iloc[0]
    if row.get("run_id"):
        return run_config(str(row["run_id"]))  # exactly what the trial trained with
    params = {c.removeprefix("params."): row[c] for c in rep.trials.columns if c.startswith("params.")}
    return parse_config(apply_params(study.base_config, params), source=f"study {study.id} trial {trial}")


def promote(study_id: str, trial: int | None = None, *, epochs: int | None = None) -> Any:
    """Launch a trial's config (the best trial's by default) as a new run, optionally with more epochs. The run
    records where it came from: its parent is the trial's run and its notes name the study and trial."""
    study = get_study(study_id)
    cfg = trial_config(study.id, trial)
    rep = study_report(study.id, with_importances=False)
    number = trial if trial is not None else int(rep.best["number"])  # type: ignore[index]
    run_id = rep.trials.loc[rep.trials["number"] == number, "run_id"].iloc[0]
    if epochs is not None:
        data = config_to_dict(cfg)
        data["epochs"] = epochs
        cfg = parse_config(data, source=f"study {study.id} trial {number} with epochs={epochs}")
    return launch_run(
        cfg, name=f"{study.name} trial {number}", tags=["promoted"], notes=f"promoted from study {study.id} trial {number}",
        parent_run_id=run_id if isinstance(run_id, str) else None,
    )  # fmt: skip


def fork_best(study_id: str, trial: int | None = None) -> Any:
    """Fork a trial's run (the best trial's by default) from its best checkpoint, with the trial's config."""
    study = get_study(study_id)
    rep = study_report(study.id, with_importances=False)
    number = trial if trial is not None else (int(rep.best["number"]) if rep.best else None)
    rows = rep.trials[rep.trials["number"] == number]
    if number is None or rows.empty or not isinstance(rows["run_id"].iloc[0], str):
        raise ValueError(f"study {study.id} has no trial {number} with a run to fork")
    run_id = rows["run_id"].iloc[0]
    ckpts = [c for c in checkpoints(run_id) if c.kind == "checkpoint"]
    best = next((c for c in ckpts if c.is_best), ckpts[-1] if ckpts else None)
    if best is None:
        raise ValueError(f"trial {number}'s run {run_id} has no checkpoint")
    return fork_run(run_id, best.id, run_config(run_id), name=f"{study.name} trial {number} fork")
