"""Metric charts: TensorBoard's debiased EMA smoothing, min/max envelopes for downsampled series, Altair."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from workbench import api


def smooth_ema(values: np.ndarray | pd.Series, weight: float) -> np.ndarray:
    """Debiased exponential moving average, as TensorBoard draws it (no pull towards the first value).

    s_t = w * s_{t-1} + (1 - w) * x_t with s_0 = 0, divided by (1 - w^t): the early points are not biased
    towards zero and not stuck at x_0. NaN/inf values are passed through unsmoothed.
    """
    x = np.asarray(values, dtype=float)
    if weight <= 0 or len(x) == 0:
        return x.copy()
    out = np.empty_like(x)
    acc, n = 0.0, 0
    for i, v in enumerate(x):
        if not np.isfinite(v):
            out[i] = v
            continue
        acc = weight * acc + (1 - weight) * v
        n += 1
        out[i] = acc / (1 - weight**n)
    return out


def phase_of(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else "other"


def group_keys(keys: list[str]) -> dict[str, list[str]]:
    """Metric keys grouped by phase (train, valid, test, infer, pass, table, system, ...), in a stable order."""
    order = ["train", "valid", "test", "infer", "pass", "table", "system"]
    groups: dict[str, list[str]] = {}
    for key in sorted(keys):
        groups.setdefault(phase_of(key), []).append(key)
    return dict(sorted(groups.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


FEW_POINTS = 60  # lines with at most this many points also draw their points (one validation point is visible)


def x_axis(field: str, title: str) -> alt.X:
    """Wall time as dates; steps, epochs and seconds as whole numbers with SI suffixes (1.2k, 3M), so a chart with
    a single point does not label its axis 35.000000."""
    if field.endswith(":T"):
        return alt.X(field, title=title)
    return alt.X(field, title=title, axis=alt.Axis(format="~s", tickMinStep=1))


def metric_chart(series: api.Series, key: str, smoothing: float, x: str = "step", height: int = 220) -> alt.Chart:
    """Raw line (faint), smoothed line, and the min/max band when the series was downsampled."""
    df = series.frame.copy()
    df["smoothed"] = smooth_ema(df["value"].to_numpy(), smoothing)
    if x == "wall":
        df["wall"] = pd.to_datetime(df["wall"], unit="s")
    base = alt.Chart(df).encode(x=x_axis(f"{x}:{'T' if x == 'wall' else 'Q'}", x))
    layers = []
    if series.downsampled:
        layers.append(base.mark_area(opacity=0.18).encode(y=alt.Y("vmin:Q", title=key), y2="vmax:Q"))
    points = len(df) <= FEW_POINTS
    raw_opacity = 0.3 if smoothing > 0 else 1.0
    raw = base.mark_line(opacity=raw_opacity, point=points and smoothing <= 0)
    layers.append(raw.encode(y=alt.Y("value:Q", title=key, scale=y_scale(df["value"])), tooltip=[x, "value"]))
    if smoothing > 0:
        layers.append(base.mark_line(point=points).encode(y="smoothed:Q", tooltip=[x, "value", "smoothed"]))
    title = key if not series.downsampled else f"{key}  ({len(df)} of {series.total_points} points, min/max band)"
    return alt.layer(*layers).properties(title=title, height=height)


def y_scale(values: pd.Series) -> alt.Scale:
    """Zoom on the data, except for a (nearly) constant series, whose float noise would fill the chart."""
    finite = values[np.isfinite(values)]
    if finite.empty:
        return alt.Scale(zero=False)
    span, size = float(finite.max() - finite.min()), float(finite.abs().max())
    return alt.Scale(zero=span <= 1e-6 * max(size, 1e-12))


def points_caption(series: api.Series) -> str:
    n = len(series.frame)
    if series.downsampled:
        return f"{n:,} of {series.total_points:,} points (bucket means; band = min/max per bucket)"
    return f"{n:,} of {series.total_points:,} points"
