"""The only surface the UI and the CLI import. Returns plain read models, dataclasses and DataFrames."""

from __future__ import annotations

import getpass
import io
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from workbench.config.io import (
    ConfigError,
    FieldError,
    commented_yaml,
    config_to_dict,
    config_to_yaml,
    default_yaml,
    load_config_file,
    parse_config,
    parse_yaml_text,
)
from workbench.runner import launch
from workbench.runner.checkpoints import best_of, is_state_file
from workbench.settings import get_settings
from workbench.store import checkpoints as ckpt_store
from workbench.store import events as event_store
from workbench.store import get_engine
from workbench.store import metrics as metric_store
from workbench.store import runs as run_store
from workbench.store.metrics import Series
from workbench.store.models import CheckpointRead, EventRead, RunRead
from workbench.store.runs import RunNotFound
from workbench.tasks import TASKS, TaskSpec

if TYPE_CHECKING:
    import pandas as pd  # imported inside the functions that build frames: `workbench run` starts faster

__all__ = [
    "ConfigError",
    "FieldError",
    "RunNotFound",
    "RunRead",
    "CheckpointRead",
    "EventRead",
    "Series",
]


def store_location() -> str:
    settings = get_settings()
    return settings.db_url or str(settings.home_dir / "workbench.db")


def engine():  # type: ignore[no-untyped-def]
    return get_engine(get_settings().database_url)


# -- tasks and configs -------------------------------------------------------------------------------------------
def tasks() -> dict[str, TaskSpec]:
    return dict(TASKS)


def config_class(task: str) -> type[BaseModel]:
    return TASKS[task].config_cls


def common_setting_names() -> set[str]:
    """Names of the training settings every task shares (the form shows them in their own section)."""
    from workbench.config.common import CommonTrainingSettings

    return set(CommonTrainingSettings.model_fields)


def default_config(task: str) -> BaseModel:
    return TASKS[task].config_cls()


def presets(task: str) -> dict[str, Path]:
    return TASKS[task].presets()


def load_preset(task: str, name: str) -> BaseModel:
    return load_config_file(presets(task)[name])


def validate_yaml(text: str, *, source: str | None = None, overrides: list[str] | None = None) -> BaseModel:
    """Parse and validate YAML text; raises ConfigError listing every problem with its field path and line."""
    return parse_yaml_text(text, source=source, overrides=overrides)


def validate_file(path: str | Path, overrides: list[str] | None = None) -> BaseModel:
    return load_config_file(path, overrides)


def validate_dict(data: dict[str, Any]) -> BaseModel:
    return parse_config(data)


def to_yaml(cfg: BaseModel, *, commented: bool = False) -> str:
    return commented_yaml(cfg) if commented else config_to_yaml(cfg)


def to_dict(cfg: BaseModel) -> dict[str, Any]:
    return config_to_dict(cfg)


def data_commands() -> dict[str, Callable[..., Any]]:
    """`workbench data <name>` commands of every task: name -> function with typer-annotated parameters.

    A task whose command cannot be imported is skipped with a warning, so one broken task never hides the rest.
    """
    import warnings

    from workbench.tasks.spec import load_target

    out: dict[str, Callable[..., Any]] = {}
    for spec in TASKS.values():
        for name, target in spec.data_commands.items():
            try:
                out[name] = load_target(target)
            except (ImportError, AttributeError) as exc:
                warnings.warn(f"data command {name} ({target}) unavailable: {exc}", stacklevel=2)
    return out


def default_config_yaml(task: str) -> str:
    return default_yaml(task)


# -- runs --------------------------------------------------------------------------------------------------------
def launch_run(
    cfg: BaseModel,
    *,
    name: str | None = None,
    tags: list[str] | None = None,
    notes: str = "",
    parent_run_id: str | None = None,
    parent_checkpoint_id: int | None = None,
) -> RunRead:
    owner = getattr(cfg, "trainer", None) or _user()  # Spleeter's `trainer` is the run's owner
    return launch.create(
        engine(),
        cfg,
        name=name,
        owner=owner,
        tags=tags,
        notes=notes,
        parent_run_id=parent_run_id,
        parent_checkpoint_id=parent_checkpoint_id,
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def list_runs(
    *,
    task: str | None = None,
    statuses: list[str] | None = None,
    text: str | None = None,
    tag: str | None = None,
    since: float | None = None,
    limit: int = 500,
) -> list[RunRead]:
    eng = engine()
    launch.reconcile(eng)
    return run_store.list_runs(eng, task=task, statuses=statuses, text=text, tag=tag, since=since, limit=limit)


def get_run(run_id: str) -> RunRead:
    eng = engine()
    run = run_store.get_run(eng, run_id)
    if run.status in ("starting", "running"):
        launch.reconcile(eng)
        run = run_store.get_run(eng, run.id)
    return run


def runs_frame(runs: list[RunRead]) -> pd.DataFrame:
    """The runs table the UI and `workbench list` show."""
    import pandas as pd

    now = time.time()
    rows = []
    for r in runs:
        rows.append(
            {
                "id": r.id,
                "name": r.name,
                "task": r.task,
                "kind": r.kind,
                "status": r.status,
                "started": pd.to_datetime(r.started_at or r.created_at, unit="s", utc=True).tz_convert(None),
                "duration_s": round(((r.ended_at or now) - r.started_at), 1) if r.started_at else None,
                "best": r.best_value,
                "metric": r.monitor_key,
                "progress": _fraction(r),
                "tags": ", ".join(r.tags),
                "owner": r.owner,
                "attempt": r.attempt,
            }
        )
    return pd.DataFrame(rows, columns=["id", "name", "task", "kind", "status", "started", "duration_s", "best", "metric", "progress", "tags", "owner", "attempt"])


def _fraction(r: RunRead) -> float | None:
    if r.status == "completed":
        return 1.0
    if r.progress_total and r.progress_done is not None:
        return max(0.0, min(1.0, r.progress_done / r.progress_total))
    return None


@dataclass
class Progress:
    done: float | None
    total: float | None
    unit: str
    fraction: float | None
    eta_s: float | None
    rate: float | None  # units per second this attempt


def progress(run: RunRead) -> Progress:
    frac = _fraction(run)
    eta = rate = None
    if (
        run.status == "running"
        and run.progress_started_at
        and run.progress_total
        and run.progress_done is not None
        and run.progress_done_at_start is not None
    ):
        elapsed = time.time() - run.progress_started_at
        done_now = run.progress_done - run.progress_done_at_start
        if elapsed > 0 and done_now > 0:
            rate = done_now / elapsed
            eta = max(0.0, (run.progress_total - run.progress_done) / rate)
    return Progress(run.progress_done, run.progress_total, run.progress_unit or "steps", frac, eta, rate)


def cancel_run(run_id: str) -> str:
    return launch.cancel(engine(), run_id)


def resume_run(run_id: str) -> RunRead:
    return launch.resume(engine(), run_id)


def delete_run(run_id: str) -> None:
    launch.delete(engine(), run_id)


def run_config(run_id: str) -> BaseModel:
    """The run's config, validated again (for cloning into the form or a fork)."""
    run = run_store.get_run(engine(), run_id)
    return parse_config(run.config, source=f"run {run.id}")


def update_run_info(run_id: str, *, name: str | None = None, tags: list[str] | None = None, notes: str | None = None) -> None:
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = name
    if tags is not None:
        fields["tags"] = sorted({t.strip() for t in tags if t.strip()})
    if notes is not None:
        fields["notes"] = notes
    if fields:
        run_store.update_run(engine(), run_id, **fields)


def events(run_id: str, limit: int = 200) -> list[EventRead]:
    return event_store.list_events(engine(), run_id=run_id, limit=limit)


def run_dir(run_id: str) -> Path:
    return launch.run_dir(run_id)


def log_tail(run_id: str, max_bytes: int = 20_000) -> str:
    path = run_dir(run_id) / "train.log"
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        data = f.read().decode("utf-8", "replace")
    return data if size <= max_bytes else data.split("\n", 1)[-1]


# -- metrics -----------------------------------------------------------------------------------------------------
def metric_keys(run_id: str) -> list[str]:
    return metric_store.metric_keys(engine(), run_id=run_id)


def series(run_id: str, key: str, max_points: int = 2000) -> Series:
    return metric_store.read_series(engine(), run_id=run_id, key=key, max_points=max_points)


def metric_summaries(run_ids: list[str]) -> pd.DataFrame:
    return metric_store.summaries(engine(), run_ids=run_ids)


def metrics_since(run_id: str, after_id: int = 0) -> pd.DataFrame:
    return metric_store.read_since(engine(), run_id=run_id, after_id=after_id)


# -- checkpoints -------------------------------------------------------------------------------------------------
def checkpoints(run_id: str) -> list[CheckpointRead]:
    """The run's checkpoints and outputs, with `is_best` set on the best by the run's monitored metric."""
    eng = engine()
    run = run_store.get_run(eng, run_id)
    rows = ckpt_store.list_checkpoints(eng, run_id=run.id)
    if run.monitor_key:
        from workbench.runner.store_backend import to_info

        infos = [to_info(c) for c in rows if c.kind == "checkpoint"]
        best = best_of(infos, (run.monitor_key, run.monitor_mode or "max"))
        for c in rows:
            c.is_best = best is not None and c.id == best.id
    return rows


class UnsafePath(PermissionError):
    """A download request that would leave WORKBENCH_HOME."""


def safe_run_file(run_id: str, relative: str) -> Path:
    """Resolve a file under a run folder, refusing anything outside WORKBENCH_HOME (`..`, absolute, symlinks)."""
    home = get_settings().home_dir
    base = (home / "runs" / run_id).resolve()
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise UnsafePath(f"refusing to serve {relative!r}: not a path inside the run folder")
    target = (base / rel).resolve()  # resolves symlinks: a link pointing outside is caught below
    if not target.is_relative_to(base) or not target.is_relative_to(home):
        raise UnsafePath(f"refusing to serve {relative!r}: it resolves outside {home}")
    if not target.exists():
        raise FileNotFoundError(f"{relative} is no longer in run {run_id} (deleted by retention?)")
    return target


def checkpoint_file(run_id: str, checkpoint_id: int) -> tuple[str, Callable[[], bytes]]:
    """(download name, function producing the bytes) of one checkpoint, checked against the download guard now;
    the bytes are read only when asked for. A folder output (CTR base/delta) comes as a zip."""
    eng = engine()
    ckpt = ckpt_store.get_checkpoint(eng, checkpoint_id=checkpoint_id)
    if ckpt is None or ckpt.run_id != run_store.get_run(eng, run_id).id:
        raise FileNotFoundError(f"run {run_id} has no checkpoint #{checkpoint_id}")
    path = safe_run_file(ckpt.run_id, ckpt.path)
    if path.is_dir():
        return f"{ckpt.run_id}-{path.name}.zip", lambda: _zip_folder(path)
    return f"{ckpt.run_id}-{path.name}", path.read_bytes


def _zip_folder(path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(path.rglob("*")):
            if f.is_file() and not f.is_symlink():  # never follow a link out of the run folder
                zf.write(f, f.relative_to(path.parent))
    return buf.getvalue()


def checkpoint_download(run_id: str, checkpoint_id: int) -> tuple[str, bytes]:
    """(file name, bytes) of one checkpoint."""
    name, produce = checkpoint_file(run_id, checkpoint_id)
    return name, produce()


def reconcile() -> list[str]:
    return launch.reconcile(engine())


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
