"""The Dashboard's live charts as Vega-Lite dicts, built so that a refresh is cheap on both ends.

Why not Altair here (docs/dashboard.md has the numbers): building and validating an Altair chart and converting it
to a spec took ~25 ms of server CPU per chart, so a CTR dashboard of 49 charts spent ~1.1 s of CPU on each 1 s
refresh. And Altair names a chart's data by a hash of its content inside the spec, so every new point changed the
spec, and the browser threw the Vega view away and built it again for every chart, every second. A dict spec that
does not mention the data is ~30x cheaper to build, and while it stays the same from one refresh to the next, the
browser keeps its Vega view and only swaps in (or appends) the data. So everything in a spec here changes rarely:
no point counts in titles (those are a caption), and x-axis bounds rounded up to 1-2-5 steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from workbench import api
from workbench.ui.charts import FEW_POINTS, TIME_FORMAT, phase_of, smooth_ema

EVAL_PHASES = {"valid", "test", "infer", "pass", "eval"}  # one point per epoch, pass or evaluation: never smoothed
HEIGHT = 180  # px of plot area: a chart's key is drawn above it by Streamlit, so it never runs into the row above
# fit the width only: Streamlit's default "fit" squeezes axes, legend and padding into the height as well, which
# left the overview charts (legend on top) about 80 px of plot
AUTOSIZE = {"type": "fit-x", "contains": "padding"}

XAxis = Literal["step", "wall"]
Domain = tuple[float, float]


@dataclass(frozen=True)
class ChartView:
    """How the user wants the run's charts drawn (the controls above the live panel)."""

    smoothing: float = 0.6
    x: XAxis = "step"
    log_y: bool = False


def smoothable(key: str, values: np.ndarray) -> bool:
    """Smoothing is for dense per-step training series, whose minibatch noise hides the trend.

    Not for evaluation metrics (a point per epoch or pass: an EMA over them lags far behind the truth; the Spleeter
    overview's smoothed SI-SDR ended at 3.5 dB while the last evaluation said 6.35 dB), nor for counters and
    schedules (monotone: `train/epoch` ended at 4.8 of 6), nor for short series.
    """
    if phase_of(key) in EVAL_PHASES:
        return False
    finite = values[np.isfinite(values)]
    if len(finite) <= FEW_POINTS:
        return False
    steps = np.diff(finite)
    return not (bool(np.all(steps >= 0)) or bool(np.all(steps <= 0)))


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above x: an axis bound that changes a few times in a run, not every second."""
    if x <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(x))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= x * (1 - 1e-12))


def x_domain(summaries: pd.DataFrame, view: ChartView, started_at: float | None, last_wall: float | None) -> Domain | None:
    """One x range for all of a run's charts, so that step 300 (or 14:05:10) sits at the same place on each."""
    if summaries.empty:
        return None
    if view.x == "step":
        lo = float(summaries["first_step"].min())
        return (min(lo, 0.0), nice_ceiling(float(summaries["last_step"].max())))
    if started_at is None or last_wall is None:
        return None
    return (started_at * 1000, (started_at + nice_ceiling(max(1.0, last_wall - started_at))) * 1000)


def chart_frame(series: api.Series, key: str, view: ChartView) -> tuple[pd.DataFrame, bool]:
    """Only the columns the chart draws (fewer bytes per refresh); True if a smoothed line was added."""
    src = series.frame
    df = pd.DataFrame({"step": src["step"].to_numpy(), "value": src["value"].to_numpy(dtype=float)})
    if view.x == "wall":
        df["wall"] = src["wall"].to_numpy(dtype=float) * 1000  # epoch ms: Vega shows it in the viewer's local time
    smoothed = view.smoothing > 0 and smoothable(key, df["value"].to_numpy())
    if smoothed:
        df["smoothed"] = smooth_ema(df["value"].to_numpy(), view.smoothing)
    if series.downsampled:
        df["vmin"], df["vmax"] = src["vmin"].to_numpy(dtype=float), src["vmax"].to_numpy(dtype=float)
    return df, smoothed


def _x_encoding(view: ChartView, domain: Domain | None) -> dict[str, Any]:
    scale: dict[str, Any] = {"domain": list(domain), "nice": False} if domain else {}
    if view.x == "wall":
        axis = {"format": TIME_FORMAT, "labelOverlap": True}
        return {"field": "wall", "type": "temporal", "title": "local time", "axis": axis, "scale": scale}
    return {"field": "step", "type": "quantitative", "title": "step", "axis": {"format": "~s", "tickMinStep": 1}, "scale": scale}


def _y_scale(values: pd.Series, log_y: bool) -> dict[str, Any]:
    """Zoom on the data, except for a (nearly) constant series, whose float noise would fill the chart. Log: `log`
    when every value is positive, else `symlog` (a loss can be negative, a counter zero)."""
    finite = values[np.isfinite(values)]
    if log_y:
        return {"type": "log" if not finite.empty and bool((finite > 0).all()) else "symlog"}
    if finite.empty:
        return {"zero": False}
    span, size = float(finite.max() - finite.min()), float(finite.abs().max())
    return {"zero": span <= 1e-6 * max(size, 1e-12)}


def _tooltip(view: ChartView, *fields: str) -> list[dict[str, Any]]:
    x = {"field": "wall", "type": "temporal", "format": TIME_FORMAT} if view.x == "wall" else {"field": "step", "type": "quantitative"}
    return [x, *({"field": f, "type": "quantitative", "format": ".5~g"} for f in fields)]


def series_spec(df: pd.DataFrame, *, smoothed: bool, downsampled: bool, view: ChartView, domain: Domain | None) -> dict[str, Any]:
    """Raw line (faint when a smoothed line is drawn over it), the smoothed line, the min/max band if downsampled."""
    y_scale = _y_scale(df["value"], view.log_y)
    points = len(df) <= FEW_POINTS
    layers: list[dict[str, Any]] = []
    if downsampled:
        band_y = {"field": "vmin", "type": "quantitative", "scale": y_scale, "title": None}
        layers.append({"mark": {"type": "area", "opacity": 0.18, "clip": True}, "encoding": {"y": band_y, "y2": {"field": "vmax"}}})
    raw = {"type": "line", "clip": True, "opacity": 0.3 if smoothed else 1.0, "point": points and not smoothed}
    y = {"field": "value", "type": "quantitative", "scale": y_scale, "title": None}
    layers.append({"mark": raw, "encoding": {"y": y, "tooltip": _tooltip(view, "value")}})
    if smoothed:
        line = {"type": "line", "clip": True, "point": points}
        layers.append({"mark": line, "encoding": {"y": {"field": "smoothed", "type": "quantitative"}, "tooltip": _tooltip(view, "value", "smoothed")}})
    return {"height": HEIGHT, "autosize": AUTOSIZE, "encoding": {"x": _x_encoding(view, domain)}, "layer": layers}


def overlay_frame(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Several chart frames of one run in one long frame, `series` = the metric key, for an overlay chart."""
    parts = [f.drop(columns=["smoothed", "vmin", "vmax"], errors="ignore").assign(series=k) for k, f in frames.items() if not f.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["series", "step", "value"])


def overlay_spec(df: pd.DataFrame, keys: list[str], *, view: ChartView, domain: Domain | None) -> dict[str, Any]:
    """A task's metrics on one chart (e.g. Recall@20 and MRR@20), raw values: these are evaluation metrics."""
    points = bool(len(df)) and int(df.groupby("series").size().max()) <= FEW_POINTS
    colour = {"field": "series", "type": "nominal", "scale": {"domain": keys}, "legend": {"orient": "top", "title": None, "labelLimit": 400}}
    y = {"field": "value", "type": "quantitative", "scale": _y_scale(df["value"], view.log_y), "title": None}
    mark = {"type": "line", "clip": True, "point": points}
    encoding = {"x": _x_encoding(view, domain), "y": y, "color": colour, "tooltip": [{"field": "series"}, *_tooltip(view, "value")]}
    return {"height": HEIGHT + 40, "autosize": AUTOSIZE, "mark": mark, "encoding": encoding}


def points_caption(series: api.Series) -> str:
    n = len(series.frame)
    if series.downsampled:
        return f"{n:,} of {series.total_points:,} points (bucket means; band = min/max per bucket)"
    return f"{n:,} of {series.total_points:,} points"
