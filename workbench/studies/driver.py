"""The study driver: Optuna's ask/tell loop over ordinary workbench runs.

One pass (`StudyDriver.step`) collects the trials whose runs ended and tells Optuna how they ended, then asks for new
trials while fewer than `parallel` are training and the budget allows, and launches each as a run. The driver keeps
no state of its own between passes: which run belongs to which trial is a user attr of the Optuna trial, so a driver
that was killed is replaced by a new one (`workbench study resume`) that picks up where it stopped; runs go on
training meanwhile (they are detached processes).

How a trial's run ends -> what Optuna is told:
- completed -> COMPLETE with the run's best value of the objective (its best validation, the checkpoint kept as best);
- pruned (its pruner stopped it, see optuna_io.TrialReporter) -> PRUNED (Optuna keeps its last intermediate value);
- failed, cancelled -> FAIL (counted in the budget);
- lost (its process vanished without reporting) -> FAIL, and the same parameters are queued again once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from workbench.config.io import ConfigError
from workbench.studies.options import StudyOptions
from workbench.studies.space import SearchSpace, apply_params, to_distributions

RUN_ATTR = "run_id"  # trial user attr: the workbench run that trains the trial
ERROR_ATTR = "error"
REQUEUED_ATTR = "requeued"  # trial user attr on a lost trial whose parameters were queued again
RETRY_ATTR = "retry_of"  # enqueue user attr: the number of the lost trial this one repeats


@dataclass(frozen=True)
class TrialOutcome:
    status: str  # the run's final status: completed, pruned, failed, cancelled, lost
    value: float | None  # best value of the objective over the run (None if it never logged one)
    error: str | None = None


class Platform(Protocol):
    """What the driver needs from the workbench: start a trial's run, see how it ended, stop it."""

    def launch_trial(self, config: dict[str, Any], trial_number: int) -> str: ...  # raises ConfigError if invalid
    def outcome(self, run_id: str, objective: str, direction: str) -> TrialOutcome | None: ...  # None while active
    def cancel(self, run_id: str) -> None: ...


class StudyDriver:
    def __init__(
        self,
        study: Any,
        *,
        base: Mapping[str, Any],
        space: SearchSpace,
        options: StudyOptions,
        objective: str,
        platform: Platform,
        started_at: float | None = None,
    ) -> None:
        self.study = study
        self.base = dict(base)
        self.space = space
        self.options = options
        self.objective = objective
        self.direction = "maximize" if study.direction.name == "MAXIMIZE" else "minimize"
        self.platform = platform
        self.started_at = started_at if started_at is not None else time.time()
        self._distributions = to_distributions(space)

    # -- one pass ---------------------------------------------------------------------------------------------------
    def step(self, *, accept_new: bool = True) -> bool:
        """Collect ended trials, start new ones. Returns True while the study still has work (trials running or
        to start)."""
        self.collect()
        if accept_new and not self.out_of_time():
            while self.running() < self.options.parallel and self.counted() < self.options.n_trials:
                self.start_trial()
        return self.running() > 0 or (accept_new and not self.out_of_time() and self.counted() < self.options.n_trials)

    def collect(self) -> None:
        from optuna.trial import TrialState

        for trial in self._running_trials():
            run_id = trial.user_attrs.get(RUN_ATTR)
            if run_id is None:
                # asked, but the driver died before the run was launched: it never trained
                self._fail(trial.number, "the study driver stopped before this trial's run was launched")
                continue
            outcome = self.platform.outcome(run_id, self.objective, self.direction)
            if outcome is None:
                continue
            if outcome.status == "completed" and outcome.value is not None:
                self.study.tell(trial.number, outcome.value)
            elif outcome.status == "pruned":
                self.study.tell(trial.number, state=TrialState.PRUNED)
            elif outcome.status == "lost" and RETRY_ATTR not in trial.user_attrs:
                self._set_attr(trial.number, REQUEUED_ATTR, True)
                self._fail(trial.number, outcome.error or "the run was lost")
                self.study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: trial.number})
            else:
                why = outcome.error or (f"the run ended {outcome.status}" if outcome.status != "completed" else f"the run logged no {self.objective}")
                self._fail(trial.number, why)

    def start_trial(self) -> int:
        trial = self.study.ask(self._distributions)
        config = apply_params(self.base, trial.params)
        try:
            run_id = self.platform.launch_trial(config, trial.number)
        except ConfigError as exc:
            # sampled values that break a cross-setting rule (e.g. epochs_warmup + epochs_ending > epochs)
            self._fail(trial.number, f"invalid configuration: {exc}")
            return trial.number
        trial.set_user_attr(RUN_ATTR, run_id)
        return trial.number

    def cancel(self) -> None:
        """Stop every running trial's run; the driver then collects them as they end."""
        for trial in self._running_trials():
            run_id = trial.user_attrs.get(RUN_ATTR)
            if run_id is not None:
                self.platform.cancel(run_id)

    # -- counts -----------------------------------------------------------------------------------------------------
    def _running_trials(self) -> list[Any]:
        from optuna.trial import TrialState

        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def running(self) -> int:
        return len(self._running_trials())

    def counted(self) -> int:
        """Trials that use the budget: all asked ones, except lost ones whose parameters were queued again."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        return sum(1 for t in trials if not t.user_attrs.get(REQUEUED_ATTR))

    def out_of_time(self) -> bool:
        return self.options.timeout_s is not None and time.time() - self.started_at > self.options.timeout_s

    def _set_attr(self, number: int, key: str, value: Any) -> None:
        storage = self.study._storage  # Optuna's public Trial API needs a live Trial; the storage sets it by number
        storage.set_trial_user_attr(storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number), key, value)

    def _fail(self, number: int, why: str) -> None:
        from optuna.trial import TrialState

        self._set_attr(number, ERROR_ATTR, why[:2000])
        self.study.tell(number, state=TrialState.FAIL)
