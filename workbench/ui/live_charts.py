"""The Dashboard's charts as Vega-Lite specs that do not depend on the points, for the live view (workbench/ui/live/).

The browser holds each chart's Vega view for as long as its spec stays the same and inserts the points that a poll
brings (live_data.py): so a spec says nothing that changes with every point. What moves as the run goes on is a
parameter that the view sets itself: the shared x range (`x_lo`, `x_hi`), whether the series is smoothed (`smooth`:
logic.js decides, a dense training series with enough points) and whether it is bucketed (`down`: the min/max band).
What a spec does take from the run's summaries changes a few times in a run at most (point markers while a series is
short, a log or symlog scale, a zero baseline for a constant series), and a changed spec is drawn anew.

Why not Altair (docs/dashboard.md has the numbers): building and validating an Altair chart cost ~25 ms of server
CPU per chart, and Altair names the data by a hash of its content inside the spec, so every new point was a new
spec and a new Vega view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from workbench.ui.charts import FEW_POINTS, TIME_FORMAT

HEIGHT = 180  # px of plot area; the chart's key is a heading above it, so it never runs into the row above
AUTOSIZE = {"type": "fit-x", "contains": "padding"}  # fit the width only: the plot keeps its height
DATA = {"name": "points"}  # the rows the view inserts: step, value, smoothed, vmin, vmax, wall (ms), series

XAxis = Literal["step", "wall"]


@dataclass(frozen=True)
class ChartView:
    """How the user wants the run's charts drawn (the controls above the live panel)."""

    smoothing: float = 0.6
    x: XAxis = "step"
    log_y: bool = False


@dataclass(frozen=True)
class Shape:
    """What a chart's spec takes from the series' summary (count, min, max): it changes a few times in a run."""

    points: bool  # few points: draw the point markers (one validation point is visible)
    positive: bool  # every value > 0: a log scale can be `log`, else `symlog`
    constant: bool  # (nearly) constant: keep zero in the y range, or its float noise fills the chart

    @classmethod
    def of(cls, count: int, lo: float, hi: float) -> Shape:
        span, size = hi - lo, max(abs(lo), abs(hi))
        return cls(points=count <= FEW_POINTS, positive=lo > 0, constant=span <= 1e-6 * max(size, 1e-12))


PARAMS = [
    {"name": "x_lo", "value": 0},
    {"name": "x_hi", "value": 1},
    {"name": "smooth", "value": False},
    {"name": "down", "value": False},
]


def _x_encoding(view: ChartView) -> dict[str, Any]:
    scale = {"domainMin": {"expr": "x_lo"}, "domainMax": {"expr": "x_hi"}, "nice": False}
    if view.x == "wall":
        axis = {"format": TIME_FORMAT, "labelOverlap": True}
        return {"field": "wall", "type": "temporal", "title": "local time", "axis": axis, "scale": scale}
    return {"field": "step", "type": "quantitative", "title": "step", "axis": {"format": "~s", "tickMinStep": 1}, "scale": scale}


def _y_scale(shape: Shape, log_y: bool) -> dict[str, Any]:
    if log_y:
        return {"type": "log" if shape.positive else "symlog"}
    return {"zero": shape.constant}


def _tooltip(view: ChartView, *fields: str) -> list[dict[str, Any]]:
    x = {"field": "wall", "type": "temporal", "format": TIME_FORMAT} if view.x == "wall" else {"field": "step", "type": "quantitative"}
    return [x, *({"field": f, "type": "quantitative", "format": ".5~g"} for f in fields)]


def series_spec(shape: Shape, view: ChartView) -> dict[str, Any]:
    """The min/max band (when bucketed), the raw line (faint under a smoothed one) and the smoothed line."""
    y_scale = _y_scale(shape, view.log_y)
    band = {
        "mark": {"type": "area", "clip": True, "opacity": {"expr": "down ? 0.18 : 0"}},
        "encoding": {"y": {"field": "vmin", "type": "quantitative", "scale": y_scale, "title": None}, "y2": {"field": "vmax"}},
    }
    raw = {
        "mark": {"type": "line", "clip": True, "point": shape.points, "opacity": {"expr": "smooth ? 0.3 : 1"}},
        "encoding": {"y": {"field": "value", "type": "quantitative", "scale": y_scale, "title": None}, "tooltip": _tooltip(view, "value")},
    }
    smoothed = {
        "mark": {"type": "line", "clip": True, "opacity": {"expr": "smooth ? 1 : 0"}},
        "encoding": {"y": {"field": "smoothed", "type": "quantitative"}, "tooltip": _tooltip(view, "value", "smoothed")},
    }
    return {
        "data": DATA, "params": PARAMS, "width": "container", "height": HEIGHT, "autosize": AUTOSIZE,
        "encoding": {"x": _x_encoding(view)}, "layer": [band, raw, smoothed],
    }  # fmt: skip


def overlay_spec(keys: list[str], shape: Shape, view: ChartView) -> dict[str, Any]:
    """A task's metrics on one chart (e.g. Recall@20 and MRR@20), raw values: these are evaluation metrics."""
    colour = {"field": "series", "type": "nominal", "scale": {"domain": keys}, "legend": {"orient": "top", "title": None, "labelLimit": 400}}
    y = {"field": "value", "type": "quantitative", "scale": _y_scale(shape, view.log_y), "title": None}
    encoding = {"x": _x_encoding(view), "y": y, "color": colour, "tooltip": [{"field": "series"}, *_tooltip(view, "value")]}
    mark = {"type": "line", "clip": True, "point": shape.points}
    return {"data": DATA, "params": PARAMS, "width": "container", "height": HEIGHT + 40, "autosize": AUTOSIZE, "mark": mark, "encoding": encoding}
