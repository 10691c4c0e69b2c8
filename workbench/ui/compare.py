"""Compare page pieces: stable run colours, overlay charts, config diff, summary table."""

from __future__ import annotations

import hashlib

import altair as alt
import pandas as pd
import streamlit as st

from workbench import api
from workbench.ui.charts import FEW_POINTS, group_keys, smooth_ema, x_axis, y_scale

PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]  # fmt: skip
X_FIELDS = {"step": "step:Q", "epoch": "epoch:Q", "wall time": "wall:T", "elapsed": "elapsed_s:Q"}


def run_colour(run_id: str) -> str:
    """The same colour for a run on every chart and every visit (hash of its id, not its position)."""
    return PALETTE[int(hashlib.sha1(run_id.encode()).hexdigest(), 16) % len(PALETTE)]


def overlay_chart(frame: pd.DataFrame, key: str, smoothing: float, x: str, by: str = "run") -> alt.Chart:
    """Lines of several runs (or several metrics: by="series") on one chart, each with its stable colour."""
    df = frame.copy()
    if x == "epoch":
        df = df.dropna(subset=["epoch"])  # runs that log no epoch series cannot be placed on this axis
    df["smoothed"] = df.groupby(by, sort=False)["value"].transform(lambda v: pd.Series(smooth_ema(v.to_numpy(), smoothing), index=v.index))
    if x == "wall time":
        df["wall"] = pd.to_datetime(df["wall"], unit="s")
    names = list(dict.fromkeys(df[by]))
    # runs keep a colour of their own everywhere; a task's metrics just take the strong colours in order
    colours = [run_colour(r) for r in names] if by == "run" else [PALETTE[i % 10] for i in range(len(names))]
    color = alt.Color(f"{by}:N", scale=alt.Scale(domain=names, range=colours), legend=alt.Legend(orient="bottom", title=None, labelLimit=400))
    base = alt.Chart(df).encode(x=x_axis(X_FIELDS[x], x), color=color)
    layers = []
    if df["downsampled"].any():
        layers.append(base.mark_area(opacity=0.12).encode(y="vmin:Q", y2="vmax:Q"))
    points = bool(len(df)) and int(df.groupby(by).size().max()) <= FEW_POINTS
    if smoothing > 0:
        layers.append(base.mark_line(opacity=0.25).encode(y=alt.Y("value:Q", title=key if by == "run" else None, scale=y_scale(df["value"]))))
        layers.append(base.mark_line(point=points).encode(y="smoothed:Q", tooltip=[by, "step", "value", "smoothed"]))
    else:
        layers.append(base.mark_line(point=points).encode(y=alt.Y("value:Q", title=key if by == "run" else None, scale=y_scale(df["value"])), tooltip=[by, "step", "value"]))
    shown = len(df)
    total = int(df.groupby(by)["total_points"].first().sum())
    return alt.layer(*layers).properties(title=alt.TitleParams(key, subtitle=f"{shown:,} of {total:,} points"), height=240)


def overlays(run_ids: list[str], smoothing: float, x: str) -> None:
    keys = api.compare_keys(run_ids)
    if not keys:
        st.info("These runs share no metric yet.")
        return
    for phase, group in group_keys(keys).items():
        st.subheader(phase)
        cols = st.columns(min(2, len(group)))
        for i, key in enumerate(group):
            frame = api.compare_series(run_ids, key)
            with cols[i % len(cols)]:
                st.altair_chart(overlay_chart(frame, key, smoothing, x), width="stretch")


def config_diff(run_ids: list[str]) -> None:
    show_all = st.toggle("Show all settings (not only the differing ones)", key="diff_all")
    diff = api.compare_configs(run_ids, only_differing=not show_all)
    if diff.empty:
        st.success("The configs are identical.")
    else:
        st.dataframe(diff, hide_index=True, width="stretch")


def summary(run_ids: list[str]) -> None:
    table = api.compare_summary(run_ids)
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button("Export table as CSV", table.to_csv(index=False), file_name="compare.csv", mime="text/csv")
