"""Where a study's Optuna records live, and the trial side of pruning.

Each study keeps Optuna's own records in a journal file, `WORKBENCH_HOME/studies/<study_id>/optuna.log`
(`JournalStorage` + `JournalFileBackend`). Not Optuna's RDB storage on the workbench database: its SQLite storage
fails with "database is locked" when several processes write at once (optuna#820), and here the driver and every
running trial write. The journal file takes a file lock per append, can be read while it grows, and lives beside the
runs on the folder that a cluster shares.

The driver (workbench.studies.driver) asks and tells; a trial run only reports intermediate values and asks the
pruner, through `TrialReporter`, which RunContext calls when the task logs its monitored metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.studies.options import StudyOptions, make_pruner

OPTIONS_ATTR = "workbench_options"  # study user attr: the StudyOptions, so a trial can rebuild the pruner
OBJECTIVE_ATTR = "workbench_objective"  # study user attr: the metric key reported as intermediate value


def journal_path(studies_dir: Path, study_id: str) -> Path:
    return studies_dir / study_id / "optuna.log"


def storage(path: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path.parent.mkdir(parents=True, exist_ok=True)
    # the open()-based lock works on network file systems too (a cluster's shared WORKBENCH_HOME)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def create(path: Path, study_id: str, *, direction: str, objective: str, options: StudyOptions) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the CLI and the app say what they did themselves
    study = optuna.create_study(storage=storage(path), study_name=study_id, direction=direction, load_if_exists=True)
    study.set_user_attr(OPTIONS_ATTR, options.model_dump(mode="json"))
    study.set_user_attr(OBJECTIVE_ATTR, objective)
    return study


def load(path: Path, study_id: str, *, sampler: Any = None) -> Any:
    """The study with its pruner rebuilt from the stored options (Optuna does not persist samplers or pruners)."""
    import optuna

    store = storage(path)
    summary = optuna.load_study(study_name=study_id, storage=store)
    options = StudyOptions.model_validate(summary.user_attrs[OPTIONS_ATTR])
    return optuna.load_study(study_name=study_id, storage=store, sampler=sampler, pruner=make_pruner(options))


class TrialReporter:
    """Reports a trial run's monitored metric to its Optuna trial and says whether the pruner stops it.

    The intermediate "step" is the number of the validation (1, 2, ...), not the optimizer step: trials with other
    batch sizes or steps per epoch are then compared at the same point of their training, as pruners assume.
    """

    def __init__(self, path: Path, study_id: str, trial_number: int) -> None:
        import optuna

        study = load(path, study_id)
        self.objective: str = study.user_attrs[OBJECTIVE_ATTR]
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_number)
        self._trial = optuna.trial.Trial(study, trial_id)
        # a resumed trial continues its count of validations
        self._reported = len(study._storage.get_trial(trial_id).intermediate_values)

    def report(self, metrics: Mapping[str, float]) -> bool:
        """Call with every batch of logged metrics; True once the pruner says to stop this trial."""
        value = metrics.get(self.objective)
        if value is None:
            return False
        self._reported += 1
        self._trial.report(float(value), self._reported)
        return bool(self._trial.should_prune())
