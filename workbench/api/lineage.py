"""Lineage: forks of a checkpoint with an edited config, and evaluation jobs of a checkpoint."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from workbench.api.base import current_user, engine
from workbench.api.checkpoints import checkpoints, safe_run_file
from workbench.api.runs import launch_run, run_config
from workbench.runner import launch
from workbench.runner.checkpoints import is_state_file
from workbench.store import checkpoints as ckpt_store
from workbench.store import runs as run_store
from workbench.store.models import RunRead


def fork_run(run_id: str, checkpoint_id: int, cfg: BaseModel, *, name: str | None = None, tags: list[str] | None = None) -> RunRead:
    """A new run whose weights start from `checkpoint_id` of `run_id`, with a possibly edited config."""
    eng = engine()
    parent = run_store.get_run(eng, run_id=run_id)
    ckpt = ckpt_store.get_checkpoint(eng, checkpoint_id=checkpoint_id)
    if ckpt is None or ckpt.run_id != parent.id:
        raise FileNotFoundError(f"run {run_id} has no checkpoint #{checkpoint_id}")
    if cfg.task != parent.task:  # type: ignore[attr-defined]
        raise ValueError(f"a fork keeps the task: {parent.task}, not {cfg.task}")  # type: ignore[attr-defined]
    safe_run_file(parent.id, ckpt.path)
    return launch_run(
        cfg,
        name=name or f"{parent.name}-fork",
        tags=tags,
        notes=f"forked from {parent.id} checkpoint #{checkpoint_id} (step {ckpt.step})",
        parent_run_id=parent.id,
        parent_checkpoint_id=checkpoint_id,
    )


def children_of(run_id: str) -> list[RunRead]:
    return run_store.list_runs(engine(), parent_run_id=run_id, limit=10_000)


def forks_of(run_id: str) -> list[RunRead]:
    return [r for r in children_of(run_id) if r.kind == "train"]


def evaluate_checkpoint(run_id: str, checkpoint_id: int | None = None, data_path: str | None = None) -> RunRead:
    """Queue an evaluation job: the checkpoint (default: the best, else the latest) of `run_id` on its config's
    test split, or on `data_path`. It runs in the background like a training run; its metrics are its results."""
    eng = engine()
    parent = run_store.get_run(eng, run_id=run_id)
    ckpts = [c for c in checkpoints(parent.id) if c.kind == "checkpoint" and is_state_file(c.path)]
    if checkpoint_id is None:
        chosen = next((c for c in ckpts if c.is_best), ckpts[-1] if ckpts else None)
        if chosen is None:
            raise FileNotFoundError(f"run {parent.id} has no checkpoint to evaluate")
        checkpoint_id = chosen.id
    ckpt = ckpt_store.get_checkpoint(eng, checkpoint_id=checkpoint_id)
    if ckpt is None or ckpt.run_id != parent.id:
        raise FileNotFoundError(f"run {parent.id} has no checkpoint #{checkpoint_id}")
    if data_path is not None and not Path(data_path).exists():
        raise FileNotFoundError(f"evaluation data not found: {data_path}")
    cfg = run_config(parent.id)
    return launch.create(
        eng,
        cfg,
        name=f"eval {parent.name} #{checkpoint_id}",
        owner=current_user(),
        notes=f"evaluation of {parent.id} checkpoint #{checkpoint_id} (step {ckpt.step})",
        parent_run_id=parent.id,
        parent_checkpoint_id=checkpoint_id,
        kind="evaluate",
        eval_data=str(Path(data_path).resolve()) if data_path else None,
    )


def evaluations_of(run_id: str) -> list[RunRead]:
    return [r for r in children_of(run_id) if r.kind == "evaluate"]


