"""Metric series of runs: keys, (downsampled) series, summaries, raw points; the charts pinned per task."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.api.base import engine
from workbench.settings import get_settings
from workbench.store import metrics as metric_store
from workbench.store.metrics import Series

if TYPE_CHECKING:
    import pandas as pd


def metric_keys(run_id: str) -> list[str]:
    return metric_store.metric_keys(engine(), run_id=run_id)


def series(run_id: str, key: str, max_points: int = 2000) -> Series:
    return metric_store.read_series(engine(), run_id=run_id, key=key, max_points=max_points)


def metric_summaries(run_ids: list[str]) -> pd.DataFrame:
    return metric_store.summaries(engine(), run_ids=run_ids)


def metrics_since(run_id: str, after_id: int = 0) -> pd.DataFrame:
    return metric_store.read_since(engine(), run_id=run_id, after_id=after_id)


def points_after(run_id: str, after: dict[str, int], limit: int = 5000) -> dict[str, list[tuple]]:
    """{key: [(step, value, wall), ...]} of the points after each key's step (at most `limit` a key)."""
    return metric_store.read_after(engine(), run_id=run_id, after=after, limit=limit)


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




def _prefs_file() -> Path:
    return get_settings().home_dir / "dashboard_prefs.json"


def pinned_metrics(task: str) -> list[str]:
    """The metric keys a user pinned on the Dashboard for runs of `task` (kept across sessions and runs)."""
    try:
        prefs = json.loads(_prefs_file().read_text())
    except (OSError, ValueError):
        return []  # no file yet, or one cut short by a crash: nothing pinned
    pinned = prefs.get("pinned", {}).get(task, []) if isinstance(prefs, dict) else []
    return [k for k in pinned if isinstance(k, str)]


def set_pinned_metrics(task: str, keys: list[str]) -> None:
    path = _prefs_file()
    try:
        prefs = json.loads(path.read_text())
        prefs = prefs if isinstance(prefs, dict) else {}
    except (OSError, ValueError):
        prefs = {}
    prefs.setdefault("pinned", {})[task] = list(dict.fromkeys(keys))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # write then rename: a reader never sees half a file
    tmp.write_text(json.dumps(prefs, indent=1))
    os.replace(tmp, path)
