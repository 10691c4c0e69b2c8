"""Dashboard: one run's status, progress/ETA, live charts, log tail and events."""

import streamlit as st

from workbench import api
from workbench.ui.common import pick_run
from workbench.ui.dashboard import live_section, run_actions, run_info

st.title("Dashboard")
if flash := st.session_state.pop("flash", None):
    st.success(flash)
run = pick_run("dashboard_run")
if run is not None:
    run_actions(run)
    run_info(run)
    live_section(run)
    config = st.expander("Config", key=f"config_{run.id}", on_change="rerun")
    if config.open:  # only when opened: highlighting the YAML cost the browser ~0.7 CPU s on every page draw
        config.code(api.to_yaml(api.run_config(run.id)), language="yaml")
