"""Compare runs: overlay their metrics, diff their configs, and tabulate last/best values."""

import streamlit as st

from workbench import api
from workbench.ui.common import run_label
from workbench.ui.compare import config_diff, overlays, summary

st.title("Compare runs")
runs = api.list_runs(limit=1000)
by_id = {r.id: r for r in runs}
preselected = [r for r in st.session_state.get("compare_runs", []) if r in by_id]
chosen = st.multiselect("Runs", list(by_id), default=preselected, format_func=lambda i: run_label(by_id[i]), key="compare_pick")
st.session_state["compare_runs"] = chosen
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
