"""Metric series of runs: keys, (downsampled) series, summaries, raw points."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.api.base import engine
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


