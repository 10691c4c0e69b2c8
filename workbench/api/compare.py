"""Comparing runs: overlay series, config diff, summary table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.api.base import engine
from workbench.api.metrics import metric_keys, metric_summaries, series
from workbench.api.runs import get_run
from workbench.store import runs as run_store

if TYPE_CHECKING:
    import pandas as pd


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
    return config_diff({r: run_store.get_run(eng, run_id=r).config for r in run_ids}, only_differing=only_differing)


def compare_summary(run_ids: list[str]) -> pd.DataFrame:
    from workbench.compare import summary_table

    runs = [get_run(r) for r in run_ids]
    modes = {r.monitor_key: r.monitor_mode for r in runs if r.monitor_key and r.monitor_mode}
    return summary_table(runs, metric_summaries([r.id for r in runs]), modes)
