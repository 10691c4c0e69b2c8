"""The only surface the UI and the CLI import. Returns plain read models, dataclasses and DataFrames."""

from __future__ import annotations

import getpass
import importlib
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
from workbench.runner.checkpoints import best_of
from workbench.settings import get_settings
from workbench.tasks import TASKS, TaskSpec


class _Lazy:
    """A module imported on its first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


if TYPE_CHECKING:
    from workbench.runner import launch
    from workbench.store import checkpoints as ckpt_store
    from workbench.store import events as event_store
    from workbench.store import metrics as metric_store
    from workbench.store import runs as run_store
    from workbench.store.metrics import Series
    from workbench.store.models import CheckpointRead, EventRead, RunRead
    from workbench.store.runs import RunNotFound
else:
    # The store and the launcher (SQLAlchemy, SQLModel: ~0.4 s) are imported on first use, so `workbench validate`
    # and `config` never pay for them and `workbench run` starts the run's worker before it does (see launch_run).
    launch = _Lazy("workbench.runner.launch")
    ckpt_store = _Lazy("workbench.store.checkpoints")
    event_store = _Lazy("workbench.store.events")
    metric_store = _Lazy("workbench.store.metrics")
    run_store = _Lazy("workbench.store.runs")
    _LAZY_NAMES = {
        "Series": "workbench.store.metrics",
        "CheckpointRead": "workbench.store.models",
        "EventRead": "workbench.store.models",
        "RunRead": "workbench.store.models",
        "RunNotFound": "workbench.store.runs",
    }

if TYPE_CHECKING:
    import pandas as pd  # imported inside the functions that build frames: `workbench run` starts faster

# The part of the surface that lives in api_artifacts (it builds on the functions below): compare, bundles, forks,
# evaluation jobs, checkpoint import and inference. Resolved on first use, like the store (see __getattr__).
_ARTIFACTS = (
    "EPOCH_KEYS",
    "overlay_series",
    "compare_keys",
    "compare_series",
    "compare_configs",
    "compare_summary",
    "run_bundle",
    "fork_run",
    "children_of",
    "forks_of",
    "evaluate_checkpoint",
    "evaluations_of",
    "compare_checkpoint_tensors",
    "compare_checkpoint_metrics",
    "import_checkpoint",
    "infer",
)
__all__ = [*_ARTIFACTS, "ConfigError", "FieldError", "RunNotFound", "RunRead", "CheckpointRead", "EventRead", "Series"]


def store_location() -> str:
    settings = get_settings()
    return settings.db_url or str(settings.home_dir / "workbench.db")


def engine():  # type: ignore[no-untyped-def]
    from workbench.store import get_engine

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


def not_used_settings(task: str) -> dict[str, str]:
    """The shared settings this task has no use for: name -> why (the form shows them apart)."""
    return dict(getattr(TASKS[task].config_cls, "not_used", {}))


def ignored_settings(cfg: BaseModel) -> list[str]:
    """A line for each setting the config's task does not use that is set away from its default."""
    from workbench.config.common import CommonTrainingSettings, ignored_settings as ignored

    return ignored(cfg) if isinstance(cfg, CommonTrainingSettings) else []


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
    """Launch a run. Its supervisor is started first, before the store is even imported, so that the worker's
    start-up (torch, the task's code) overlaps the insert (runner/spawn.py); a run that has to queue stops it."""
    from workbench.ids import new_run_id
    from workbench.runner import spawn

    owner = getattr(cfg, "trainer", None) or _user()  # Spleeter's `trainer` is the run's owner
    run_id = new_run_id()
    supervisor = spawn.start_supervisor(run_id, cfg.task, cfg.nproc_per_node)  # type: ignore[attr-defined]
    try:
        eng = engine()
    except BaseException:
        spawn.discard(supervisor, run_id)
        raise
    # from here on launch.create owns the early supervisor: it uses it, or stops it
    return launch.create(
        eng,
        cfg,
        name=name,
        owner=owner,
        tags=tags,
        notes=notes,
        parent_run_id=parent_run_id,
        parent_checkpoint_id=parent_checkpoint_id,
        run_id=run_id,
        supervisor=supervisor,
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


def run_status(run_id: str) -> str | None:
    """A run's status alone (exact id), cheap enough to poll many times a second; None if there is no such run."""
    return run_store.get_status(engine(), run_id)


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


if TYPE_CHECKING:
    from workbench.api_artifacts import *  # noqa: F403


def __getattr__(name: str) -> Any:
    if name in _ARTIFACTS:
        return getattr(importlib.import_module("workbench.api_artifacts"), name)
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
