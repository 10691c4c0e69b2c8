"""Part of workbench.api (re-exported there): comparing runs, bundles, forks, evaluation jobs, checkpoint
comparison and import, and task inference. UI and CLI import these through `workbench.api`, never from here.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from workbench.api import (
    TASKS,
    CheckpointRead,
    RunRead,
    _user,
    checkpoints,
    engine,
    get_run,
    launch,
    launch_run,
    metric_keys,
    metric_summaries,
    metrics_since,
    run_config,
    run_dir,
    safe_run_file,
    series,
    to_yaml,
)
from workbench.config.io import config_to_dict, config_to_yaml
from workbench.runner.checkpoints import is_state_file
from workbench.store import checkpoints as ckpt_store
from workbench.store import runs as run_store

if TYPE_CHECKING:
    import pandas as pd

# -- compare -----------------------------------------------------------------------------------------------------
def overlay_series(run_id: str, keys: tuple[str, ...], max_points: int = 2000) -> pd.DataFrame:
    """Several metrics of one run in one frame, `series` column = metric key (for a task's overlay charts)."""
    import pandas as pd

    frames = []
    for key in keys:
        s = series(run_id, key, max_points=max_points)
        if not s.frame.empty:
            frames.append(s.frame.assign(series=key, downsampled=s.downsampled, total_points=s.total_points))
    columns = ["series", "step", "value", "vmin", "vmax", "wall", "downsampled", "total_points"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def compare_keys(run_ids: list[str]) -> list[str]:
    """Metric keys logged by at least two of the runs (all keys for a single run), sorted."""
    counts: dict[str, int] = {}
    for run_id in run_ids:
        for key in metric_keys(run_id):
            counts[key] = counts.get(key, 0) + 1
    need = 2 if len(run_ids) > 1 else 1
    return sorted(k for k, n in counts.items() if n >= need)


EPOCH_KEYS = ("train/epoch", "pass/global")  # what tasks log to say which epoch (or CTR pass) a step is in


def _epoch_of_steps(run_id: str, steps: pd.Series) -> pd.Series:
    """Fractional epoch of each step, interpolated from the run's epoch series (NaN if it logs none)."""
    import numpy as np
    import pandas as pd

    for key in EPOCH_KEYS:
        marks = series(run_id, key, max_points=100_000).frame
        if not marks.empty:
            # an epoch series holds (step at the end of epoch e, e): step s lies in epoch e-1 + fraction
            xs = np.r_[0.0, marks["step"].to_numpy(dtype=float)]
            ys = np.r_[marks["value"].iloc[0] - 1.0, marks["value"].to_numpy(dtype=float)]
            return pd.Series(np.interp(steps.to_numpy(dtype=float), xs, ys), index=steps.index)
    return pd.Series(float("nan"), index=steps.index)


def compare_series(run_ids: list[str], key: str, max_points: int = 2000) -> pd.DataFrame:
    """One metric of several runs, each downsampled like the dashboard; columns run, step, epoch (from the run's
    epoch or pass series), value, vmin, vmax, wall, elapsed_s (seconds since the run's first point of this key),
    downsampled, total_points."""
    import pandas as pd

    frames = []
    for run_id in run_ids:
        s = series(run_id, key, max_points=max_points)
        if s.frame.empty:
            continue
        f = s.frame.copy()
        f["run"] = run_id
        f["epoch"] = _epoch_of_steps(run_id, f["step"])
        f["elapsed_s"] = f["wall"] - f["wall"].min()
        f["downsampled"] = s.downsampled
        f["total_points"] = s.total_points
        frames.append(f)
    columns = ["run", "step", "epoch", "value", "vmin", "vmax", "wall", "elapsed_s", "downsampled", "total_points"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def compare_configs(run_ids: list[str], only_differing: bool = True) -> pd.DataFrame:
    from workbench.compare import config_diff

    eng = engine()
    return config_diff({r: run_store.get_run(eng, r).config for r in run_ids}, only_differing=only_differing)


def compare_summary(run_ids: list[str]) -> pd.DataFrame:
    from workbench.compare import summary_table

    runs = [get_run(r) for r in run_ids]
    modes = {r.monitor_key: r.monitor_mode for r in runs if r.monitor_key and r.monitor_mode}
    return summary_table(runs, metric_summaries([r.id for r in runs]), modes)


# -- bundles and forks -------------------------------------------------------------------------------------------
def run_bundle(run_id: str) -> tuple[str, bytes]:
    """A zip of the run: config.yaml, metrics.csv, train.log, and its best and latest checkpoints."""
    run = get_run(run_id)
    folder = run_dir(run.id)
    ckpts = [c for c in checkpoints(run.id) if c.kind == "checkpoint" and is_state_file(c.path)]
    chosen = {c.id: c for c in ckpts if c.is_best}
    if ckpts:
        chosen[ckpts[-1].id] = ckpts[-1]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{run.id}/config.yaml", to_yaml(run_config(run.id)))
        zf.writestr(f"{run.id}/metrics.csv", metrics_since(run.id).drop(columns=["id"]).to_csv(index=False))
        log = folder / "train.log"
        if log.exists():
            zf.write(safe_run_file(run.id, "train.log"), f"{run.id}/train.log")
        for c in chosen.values():
            try:
                zf.write(safe_run_file(run.id, c.path), f"{run.id}/{c.path}")
            except FileNotFoundError:
                continue  # retention removed it between the listing and now
    return f"{run.id}-bundle.zip", buf.getvalue()


def fork_run(run_id: str, checkpoint_id: int, cfg: BaseModel, *, name: str | None = None, tags: list[str] | None = None) -> RunRead:
    """A new run whose weights start from `checkpoint_id` of `run_id`, with a possibly edited config."""
    eng = engine()
    parent = run_store.get_run(eng, run_id)
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


# -- evaluation jobs ---------------------------------------------------------------------------------------------
def evaluate_checkpoint(run_id: str, checkpoint_id: int | None = None, data_path: str | None = None) -> RunRead:
    """Queue an evaluation job: the checkpoint (default: the best, else the latest) of `run_id` on its config's
    test split, or on `data_path`. It runs in the background like a training run; its metrics are its results."""
    eng = engine()
    parent = run_store.get_run(eng, run_id)
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
        owner=_user(),
        notes=f"evaluation of {parent.id} checkpoint #{checkpoint_id} (step {ckpt.step})",
        parent_run_id=parent.id,
        parent_checkpoint_id=checkpoint_id,
        kind="evaluate",
        eval_data=str(Path(data_path).resolve()) if data_path else None,
    )


def evaluations_of(run_id: str) -> list[RunRead]:
    return [r for r in children_of(run_id) if r.kind == "evaluate"]


# -- checkpoint comparison and import ----------------------------------------------------------------------------
def _checkpoint_state(checkpoint_id: int) -> tuple[CheckpointRead, dict[str, Any]]:
    from workbench.runner.checkpoints import load_checkpoint_file

    ckpt = ckpt_store.get_checkpoint(engine(), checkpoint_id=checkpoint_id)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint #{checkpoint_id}")
    path = safe_run_file(ckpt.run_id, ckpt.path)
    if path.is_dir():
        raise ValueError(f"checkpoint #{checkpoint_id} is a folder output ({ckpt.kind}); pick a .pt checkpoint")
    return ckpt, load_checkpoint_file(path)


def compare_checkpoint_tensors(checkpoint_a: int, checkpoint_b: int) -> pd.DataFrame:
    """Per-tensor L2 distance and relative change of the model weights between two checkpoints (any runs)."""
    import pandas as pd

    from workbench.runner.checkpoints import tensor_differences

    _, a = _checkpoint_state(checkpoint_a)
    _, b = _checkpoint_state(checkpoint_b)
    if "model" not in a or "model" not in b:
        raise ValueError("both checkpoints must hold a 'model' state dict")
    return pd.DataFrame(tensor_differences(a["model"], b["model"]))


def compare_checkpoint_metrics(checkpoint_ids: list[int]) -> pd.DataFrame:
    """Metrics at save time of several checkpoints, side by side (one row per checkpoint)."""
    import pandas as pd

    eng = engine()
    rows = []
    for cid in checkpoint_ids:
        c = ckpt_store.get_checkpoint(eng, checkpoint_id=cid)
        if c is not None:
            rows.append({"checkpoint": c.id, "run": c.run_id, "kind": c.kind, "step": c.step, "epoch": c.epoch, **c.metrics})
    return pd.DataFrame(rows)


def import_checkpoint(cfg: BaseModel, file_name: str, data: bytes, *, name: str | None = None) -> RunRead:
    """Register a checkpoint produced elsewhere as an `import` run, so it can be evaluated or forked.

    The file is read with torch.load(weights_only=True) and checked against the task's model (missing or
    unexpected tensors, wrong shapes); nothing is stored if the check fails.
    """
    import torch

    from workbench.runner.checkpoints import atomic_torch_save, sha256_of

    spec = TASKS[cfg.task]  # type: ignore[attr-defined]
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{file_name}: not a checkpoint that loads with torch.load(weights_only=True): {exc}") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"{file_name}: expected a dict with a 'model' state dict, got {type(state).__name__}")
    if spec.check_target is not None:
        from workbench.tasks.spec import load_target

        problems = load_target(spec.check_target)(cfg, state)
        if problems:
            raise ValueError(f"{file_name} does not fit the {spec.name} model of this config:\n- " + "\n- ".join(problems))
    eng = engine()
    run = run_store.create_run(
        eng, task=spec.name, name=name or f"import {file_name}", config=config_to_dict(cfg), monitor=spec.monitor(cfg),
        owner=_user(), notes=f"imported from {file_name}", kind="import",
    )  # fmt: skip
    folder = run_dir(run.id)
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(config_to_yaml(cfg))
    target = folder / "checkpoints" / "imported.pt"
    atomic_torch_save(state, target)
    step = int(state["step"]) if isinstance(state.get("step"), int) else 0
    ckpt_store.add_checkpoint(
        eng, run_id=run.id, path="checkpoints/imported.pt", kind="checkpoint", step=step, epoch=None, metrics={},
        size_bytes=target.stat().st_size, sha256=sha256_of(target), created_at=time.time(),
    )  # fmt: skip
    run_store.mark_imported(eng, run.id)
    return run_store.get_run(eng, run.id)


# -- inference ("try it") ----------------------------------------------------------------------------------------
def infer(run_id: str, checkpoint_id: int, input_path: str | Path) -> dict[str, Path]:
    """Run the task's inference on one input with a checkpoint; outputs land in the run's `inference/` folder."""
    from workbench.tasks.spec import load_target

    run = get_run(run_id)
    spec = TASKS[run.task]
    if spec.infer_target is None:
        raise ValueError(f"the {run.task} task has no inference preview")
    if not Path(input_path).is_file():
        raise FileNotFoundError(f"input not found: {input_path}")
    _, state = _checkpoint_state(checkpoint_id)
    out_dir = run_dir(run.id) / "inference" / f"ckpt{checkpoint_id}-{Path(input_path).stem}"
    return load_target(spec.infer_target)(state, run.config, input_path, out_dir)
