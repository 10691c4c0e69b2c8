"""Runs: every run ever launched; filter, pick extra columns, then open, cancel, resume, clone, compare or delete."""

import streamlit as st

from workbench import api
from workbench.ui.runs import (
    chosen_columns,
    column_pickers,
    filters,
    quick_run_offer,
    runs_table,
    selected_actions,
    show_flash,
    watch_statuses,
)

st.title("Runs")
show_flash()
task, statuses, text, tag, since = filters()
runs = api.list_runs(task=task, statuses=statuses or None, text=text or None, tag=tag or None, since=since)
if not runs and not (task or statuses or text or tag or since):
    quick_run_offer()
    st.stop()

config_columns, metric_columns, stat = chosen_columns()
table = api.runs_table(runs, config_columns=config_columns, metric_columns=metric_columns, stat=stat)
column_pickers(table)
st.caption(f"{len(runs)} run(s)")
chosen = runs_table(runs, table)
watch_statuses(runs)
selected_actions(chosen)
