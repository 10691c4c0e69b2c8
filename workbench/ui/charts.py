"""Chart pieces shared by the Dashboard and Compare pages: debiased EMA smoothing, key grouping, Altair axes."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd


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
TIME_FORMAT = "%H:%M:%S"  # 24-hour local clock: Vega's default "%I:%M" drew 16:30 as "04:30"


def x_axis(field: str, title: str) -> alt.X:
    """Wall time as 24-hour local clock time; steps, epochs and seconds as whole numbers with SI suffixes (1.2k, 3M),
    so a chart with a single point does not label its axis 35.000000."""
    if field.endswith(":T"):
        return alt.X(field, title=title, axis=alt.Axis(format=TIME_FORMAT))
    return alt.X(field, title=title, axis=alt.Axis(format="~s", tickMinStep=1))


def y_scale(values: pd.Series) -> alt.Scale:
    """Zoom on the data, except for a (nearly) constant series, whose float noise would fill the chart."""
    finite = values[np.isfinite(values)]
    if finite.empty:
        return alt.Scale(zero=False)
    span, size = float(finite.max() - finite.min()), float(finite.abs().max())
    return alt.Scale(zero=span <= 1e-6 * max(size, 1e-12))
