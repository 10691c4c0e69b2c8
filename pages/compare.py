"""Compare runs: overlay their metrics, diff their configs, and tabulate last/best values."""

import streamlit as st

from workbench import api
from workbench.ui.common import pick_runs
from workbench.ui.compare import config_diff, overlays, summary

st.title("Compare runs")
chosen = pick_runs("compare_pick", api.list_runs(limit=1000))
if len(chosen) < 1:
    st.info("Pick two or more runs (of one task, or of several tasks for the metrics they share).")
else:
    c1, c2 = st.columns(2)
    smoothing = c1.slider("Smoothing (debiased EMA)", 0.0, 0.999, 0.6, 0.001, key="compare_smoothing")
    x_axis = c2.radio("Align by", ["step", "epoch", "wall time", "elapsed"], horizontal=True, key="compare_x")
    tab_charts, tab_table, tab_config = st.tabs(["Charts", "Summary table", "Config diff"])
    with tab_charts:
        overlays(chosen, smoothing, x_axis)
    with tab_table:
        summary(chosen)
    with tab_config:
        config_diff(chosen)
