"""Study charts (Altair): optimisation history, intermediate values, parallel coordinates, importances, slices.

Inputs are the plain frames of `api.study_report` (trials: number, state, value, params.<path> columns; steps:
number, state, validation, value). Pruned trials are drawn in their own colour everywhere.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

STATE_COLORS = alt.Scale(domain=["complete", "pruned", "fail", "running"], range=["#1f77b4", "#ff7f0e", "#d62728", "#7f7f7f"])
HEIGHT = 260


def param_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if c.startswith("params.")]


def history_chart(trials: pd.DataFrame, history: pd.DataFrame, objective: str) -> alt.Chart:
    """Each finished trial's value by trial number, and the best value so far as a step line."""
    points = (
        alt.Chart(trials.dropna(subset=["value"]))
        .mark_circle(size=60)
        .encode(
            x=alt.X("number:Q", title="trial", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("value:Q", title=objective, scale=alt.Scale(zero=False)),
            color=alt.Color("state:N", scale=STATE_COLORS, title="state"),
            tooltip=["number", "state", "value"],
        )
    )
    best = alt.Chart(history).mark_line(interpolate="step-after", color="#2ca02c").encode(x="number:Q", y="best:Q")
    return alt.layer(points, best).properties(title="Optimisation history (line: best so far)", height=HEIGHT)


def intermediate_chart(steps: pd.DataFrame, objective: str) -> alt.Chart:
    """Every trial's reported validations; pruned trials end early in their own colour."""
    return (
        alt.Chart(steps)
        .mark_line(point=True, opacity=0.8)
        .encode(
            x=alt.X("validation:Q", title="validation", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("value:Q", title=objective, scale=alt.Scale(zero=False)),
            detail="number:N",
            color=alt.Color("state:N", scale=STATE_COLORS, title="state"),
            tooltip=["number", "state", "validation", "value"],
        )
        .properties(title="Intermediate values (what the pruner compares)", height=HEIGHT)
    )


def parallel_chart(trials: pd.DataFrame, objective: str) -> alt.Chart | None:
    """Parallel coordinates of the finished trials: each parameter and the value, scaled to 0..1 per axis."""
    params = param_columns(trials)
    done = trials[trials["value"].notna()]
    if not params or len(done) < 2:
        return None
    axes = [*params, "value"]
    frame = done[["number", "state", *axes]].copy()
    for col in axes:
        values = frame[col]
        if not pd.api.types.is_numeric_dtype(values):
            codes = {v: i for i, v in enumerate(sorted(values.astype(str).unique()))}
            values = values.astype(str).map(codes).astype(float)
        lo, hi = float(values.min()), float(values.max())
        frame[col] = (values - lo) / (hi - lo) if hi > lo else 0.5
    long = frame.melt(id_vars=["number", "state"], value_vars=axes, var_name="axis", value_name="scaled")
    long["axis"] = long["axis"].str.removeprefix("params.")
    return (
        alt.Chart(long)
        .mark_line(opacity=0.6)
        .encode(
            x=alt.X("axis:N", sort=[a.removeprefix("params.") for a in axes], title=None),
            y=alt.Y("scaled:Q", title="scaled to the trials' range", axis=alt.Axis(labels=False)),
            detail="number:N",
            color=alt.Color("state:N", scale=STATE_COLORS, title="state"),
            tooltip=["number", "state"],
        )
        .properties(title=f"Parallel coordinates (last axis: {objective})", height=HEIGHT)
    )


def importance_chart(importances: dict[str, float]) -> alt.Chart | None:
    if not importances:
        return None
    frame = pd.DataFrame({"parameter": list(importances), "importance": list(importances.values())})
    # vertical bars: a discrete y axis collapses in a chart that stretches to the column's width
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("parameter:N", sort="-y", title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("importance:Q", title="importance (fANOVA)", scale=alt.Scale(domain=[0, 1])),
            tooltip=["parameter", alt.Tooltip("importance:Q", format=".3f")],
        )
        .properties(title="Parameter importance", height=HEIGHT)
    )


def slice_charts(trials: pd.DataFrame, objective: str) -> list[alt.Chart]:
    """One scatter per parameter: its value against the objective (log axis for log-sampled-looking ranges)."""
    charts = []
    done = trials[trials["value"].notna()]
    for col in param_columns(trials):
        name = col.removeprefix("params.")
        # a dot in a field name is a nested path to Vega-Lite: plot the parameter under a plain name
        frame = done[["number", "state", "value"]].assign(param=done[col])
        numeric = pd.api.types.is_numeric_dtype(frame["param"])
        positive = numeric and (frame["param"] > 0).all() and len(frame) > 1
        spread = float(frame["param"].max() / frame["param"].min()) if positive else 0.0
        scale = alt.Scale(type="log") if spread >= 20 else alt.Scale(zero=False)
        x = alt.X("param:Q", title=name, scale=scale) if numeric else alt.X("param:N", title=name)
        charts.append(
            alt.Chart(frame)
            .mark_circle(size=60)
            .encode(
                x=x, y=alt.Y("value:Q", title=objective, scale=alt.Scale(zero=False)), color=alt.Color("state:N", scale=STATE_COLORS),
                tooltip=["number", alt.Tooltip("param", title=name), "value"],
            )
            .properties(title=f"Slice: {name}", height=220)
        )
    return charts
