"""How a study searches: objective, sampler, pruner, budget. Samplers and pruners are Optuna's own."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench.config.io import FieldError
from workbench.studies.space import Choices, Range, SearchSpace

Sampler = Literal["tpe", "random", "grid", "cmaes", "gp"]
Pruner = Literal["median", "successive_halving", "hyperband", "none"]
Direction = Literal["maximize", "minimize"]


class StudyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objective: str | None = Field(None, description="Metric to optimise (default: the task's monitored metric, e.g. valid/mrr@20).")
    direction: Direction | None = Field(None, description="maximize or minimize (default: the monitored metric's own).")
    sampler: Sampler = Field("tpe", description="Optuna sampler: TPE (default), random, grid, CMA-ES or GP.")
    pruner: Pruner = Field("median", description="Optuna pruner that stops unpromising trials early; none to train every trial fully.")
    n_trials: int = Field(20, ge=1, description="Number of trials.")
    parallel: int = Field(1, ge=1, description="Trials trained at once (within the workbench's max_concurrent_runs).")
    timeout_s: float | None = Field(None, gt=0, description="Start no new trial after this many seconds.")
    seed: int | None = Field(None, description="Seed of the sampler (same seed and space: the same first proposals).")
    n_startup_trials: int = Field(5, ge=0, description="Pruner: trials that always run fully before pruning starts.")
    n_warmup_steps: int = Field(1, ge=0, description="Pruner: validations of a trial before it may be pruned.")


def check_options(options: StudyOptions, space: SearchSpace) -> list[FieldError]:
    """Combinations Optuna would accept with a warning but not do what the user asked."""
    problems: list[FieldError] = []
    if options.sampler == "grid":
        for path, p in space.items():
            if isinstance(p, Range) and not (p.integer or p.step is not None):
                problems.append(FieldError(f"space.{path}", "the grid sampler needs choices or a range with a step"))
    if options.sampler == "cmaes":
        for path, p in space.items():
            if isinstance(p, Choices):
                problems.append(FieldError(f"space.{path}", "CMA-ES does not search choices: use a range, or the TPE sampler"))
    return problems


def grid_values(space: SearchSpace) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for path, p in space.items():
        if isinstance(p, Choices):
            out[path] = list(p.choices)
        else:
            step = p.step if p.step is not None else 1
            n = int(round((p.high - p.low) / step)) + 1
            values = [p.low + i * step for i in range(n)]
            out[path] = [int(v) for v in values] if p.integer else [round(v, 12) for v in values]
    return out


def make_sampler(options: StudyOptions, space: SearchSpace) -> Any:
    import optuna

    seed = options.seed
    if options.sampler == "tpe":
        # constant_liar: parallel trials get distinct proposals instead of the same point (optuna#4714)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=options.parallel > 1)
    if options.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if options.sampler == "grid":
        return optuna.samplers.GridSampler(grid_values(space), seed=seed)
    if options.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    return optuna.samplers.GPSampler(seed=seed)


def make_pruner(options: StudyOptions) -> Any:
    import optuna

    if options.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=options.n_startup_trials, n_warmup_steps=options.n_warmup_steps)
    if options.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, options.n_warmup_steps))
    if options.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, options.n_warmup_steps))
    return optuna.pruners.NopPruner()
