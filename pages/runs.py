"""Runs: every run ever launched; filter, then open, cancel, resume, clone or delete the selected ones."""

import streamlit as st

from workbench import api
from workbench.ui.runs import filters, selected_actions

st.title("Runs")
task, statuses, text, tag, since = filters()
runs = api.list_runs(task=task, statuses=statuses or None, text=text or None, tag=tag or None, since=since)
frame = api.runs_frame(runs)
st.caption(f"{len(frame)} run(s)")
event = st.dataframe(
    frame,
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="multi-row",
    key="runs_table",
    column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
        "best": st.column_config.NumberColumn("best", format="%.4f"),
        "started": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    },
)
chosen = [runs[i] for i in event.selection.rows] if event and event.selection else []
selected_actions(chosen)
