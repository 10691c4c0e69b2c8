"""Runs: launch, list, read, cancel, resume, delete, edit, logs and events."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from workbench.api.base import current_user, engine
from workbench.config.io import parse_config
from workbench.runner import launch, scheduler
from workbench.runner.scheduler import Housekeeping
from workbench.store import events as event_store
from workbench.store import metrics as metric_store
from workbench.store import runs as run_store
from workbench.store.models import ACTIVE, EventRead, RunRead, RunStatus, RunUpdate
from workbench.tags import clean_tags

if TYPE_CHECKING:
    import pandas as pd


def launch_run(
    cfg: BaseModel,
    *,
    name: str | None = None,
    tags: list[str] | None = None,
    notes: str = "",
    parent_run_id: str | None = None,
    parent_checkpoint_id: int | None = None,
) -> RunRead:
    """Launch a run: it is inserted `queued` and starts at once if a slot is free (runner/launch.py)."""
    owner = getattr(cfg, "trainer", None) or current_user()  # Spleeter's `trainer` is the run's owner
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


def list_runs(
    *,
    task: str | None = None,
    statuses: list[str] | None = None,
    text: str | None = None,
    tag: str | None = None,
    since: float | None = None,
    limit: int = 500,
) -> list[RunRead]:
    """Runs, newest first. A read only: it never starts or changes a run (housekeeping() does)."""
    return run_store.list_runs(engine(), task=task, statuses=statuses, text=text, tag=tag, since=since, limit=limit)


def get_run(run_id: str) -> RunRead:
    """One run by id or unique id prefix. A read only, like list_runs."""
    return run_store.get_run(engine(), run_id=run_id)


def run_status(run_id: str) -> RunStatus | None:
    """A run's status alone (exact id), cheap enough to poll many times a second; None if there is no such run."""
    return run_store.get_status(engine(), run_id=run_id)


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


def run_statuses(run_ids: list[str]) -> dict[str, str]:
    """Statuses of these runs in one cheap read: what a table polls to learn that it is out of date."""
    return run_store.get_statuses(engine(), run_ids=run_ids)


METRIC_STATS = ("last", "min", "max")


@dataclass
class RunsTable:
    frame: pd.DataFrame  # runs_frame's columns, then one per chosen config path and per chosen metric
    config_paths: list[str]  # every config path the runs have (dotted), for a column picker
    metric_keys: list[str]  # every metric key the runs logged


def runs_table(
    runs: list[RunRead], *, config_columns: Sequence[str] = (), metric_columns: Sequence[str] = (), stat: str = "last"
) -> RunsTable:
    """The runs table with chosen hyper-parameters and metrics as extra (sortable) columns, as in MLflow's run list.

    A config column is a dotted path (`learning_rate`, `data.maxlen`); a run without it shows nothing there. A metric
    column is the `stat` (last, min or max) of a key, read from the metric summaries of all shown runs in one query.
    """
    if stat not in METRIC_STATS:
        raise ValueError(f"stat must be one of {', '.join(METRIC_STATS)}, got {stat!r}")
    frame = runs_frame(runs)
    base = list(frame.columns)
    flat = [_flatten(r.config) for r in runs]
    paths = list(dict.fromkeys(p for f in flat for p in f if p != "task"))
    for path in config_columns:
        frame[path] = [_cell(f.get(path)) for f in flat]
    summaries = metric_store.summaries(engine(), run_ids=[r.id for r in runs]) if runs else None
    keys = sorted(summaries["key"].unique()) if summaries is not None else []
    for key in metric_columns:
        chosen = summaries[summaries["key"] == key] if summaries is not None else None
        by_run = dict(zip(chosen["run_id"], chosen[stat])) if chosen is not None else {}
        frame[f"{key} ({stat})"] = [by_run.get(r.id) for r in runs]
    # the chosen columns right after the status, where they are seen without scrolling the wide table sideways
    extra = [c for c in frame.columns if c not in base]
    at = base.index("status") + 1
    return RunsTable(frame[[*base[:at], *extra, *base[at:]]], paths, keys)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _cell(value: Any) -> Any:
    """Numbers and text stay themselves (so the column sorts as numbers); lists and the like become text."""
    return value if value is None or isinstance(value, (int, float, str)) else str(value)


def _fraction(r: RunRead) -> float | None:
    if r.status == RunStatus.COMPLETED:
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
        run.status == RunStatus.RUNNING
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
    run = run_store.get_run(engine(), run_id=run_id)
    return parse_config(run.config, source=f"run {run.id}")


def update_run_info(run_id: str, *, name: str | None = None, tags: str | list[str] | None = None, notes: str | None = None) -> None:
    """Rename, re-tag (a list, or one comma-separated string; see workbench/tags.py) or annotate a run."""
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = name
    if tags is not None:
        fields["tags"] = clean_tags(tags)
    if notes is not None:
        fields["notes"] = notes
    run_store.update_run(engine(), run_id=run_id, run_in=RunUpdate(**fields))


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


# what workbench/tasks/profiling.py writes (RUN_SUBDIR/SUMMARY_FILE there; read here without importing torch)
PROFILE_SUMMARY = "profile/summary.json"
PROFILE_TRACE = "profile/trace.json"


def profile_summary(run_id: str) -> dict[str, Any] | None:
    """The run's profiler summary (`profiling: true`): top operators by self CPU (and CUDA) time in ms, the phases'
    shares of step time, the recorded steps and where the Chrome trace is. None if the run was not profiled or has
    not reached its profiling window yet; `{"error": ...}` if the run ended before the window."""
    import json

    path = run_dir(get_run(run_id).id) / PROFILE_SUMMARY
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    summary["trace_in_run_dir"] = (path.parent / "trace.json").is_file()  # offered for download only from there
    return summary


def has_profile_summary(run_id: str) -> bool:
    """Whether profile_summary() of this (full) run id has something to show, without reading it: the Dashboard's
    poll asks every second."""
    return (run_dir(run_id) / PROFILE_SUMMARY).is_file()


def housekeeping() -> Housekeeping:
    """One housekeeping pass now: mark runs whose supervisor vanished `lost`, then start queued runs of this host
    that have a free slot. Waits for a pass another process is running."""
    done = scheduler.housekeeping(engine(), wait=True)
    assert done is not None  # wait=True always gets the lock
    return done


def start_housekeeping() -> None:
    """Run housekeeping every `housekeeping_s` seconds on a daemon thread of this process (the UI server; `--wait`).
    Once per process: later calls do nothing."""
    scheduler.start_background_housekeeping()


@dataclass
class SyncResult:
    applied: int  # journal records stored by this call
    journal_seq: int  # the last journal record now in the store


def sync_run(run_id: str) -> SyncResult:
    """Store what the run's journal holds beyond the store (records a store outage kept from it). Idempotent:
    records already stored are skipped, so a second call applies nothing."""
    from workbench.runner.journal import replay

    run = run_store.get_run(engine(), run_id=run_id)
    applied, seq = replay(engine(), run.id, run_dir(run.id))
    return SyncResult(applied=applied, journal_seq=seq)


