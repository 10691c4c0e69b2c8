"""Dashboard: one run's status, progress/ETA, live charts, log tail and events."""

import streamlit as st

from workbench import api
from workbench.ui.common import pick_run
from workbench.ui.dashboard import live_panel, run_actions, run_info

st.title("Dashboard")
if flash := st.session_state.pop("flash", None):
    st.success(flash)
run = pick_run("dashboard_run")
if run is not None:
    c1, c2, c3 = st.columns([2, 2, 3])
    smoothing = c1.slider("Smoothing (debiased EMA)", 0.0, 0.999, 0.6, 0.001, key="smoothing")
    x_axis = c2.radio("x axis", ["step", "wall"], horizontal=True, key="x_axis")
    with c3:
        run_actions(run)
    run_info(run)
    live_panel(run.id, smoothing, x_axis, live=run.status not in api.ENDED)
    with st.expander("Config"):
        st.code(api.to_yaml(api.run_config(run.id)), language="yaml")
