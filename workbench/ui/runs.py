"""Runs page pieces: filters and actions on the selected runs."""

from __future__ import annotations

from datetime import datetime, time

import streamlit as st

from workbench import api
from workbench.ui.common import SELECTED_RUN
from workbench.ui.newrun import CLONE_REQUEST

STATUSES = [s.value for s in api.RunStatus]  # every status the store allows, `pruned` included


def filters() -> tuple[str | None, list[str], str, str, float | None]:
    c1, c2, c3, c4, c5 = st.columns([1, 2, 2, 1, 1])
    task = c1.selectbox("Task", ["(all)", *api.tasks()], key="runs_task")
    statuses = c2.multiselect("Status", STATUSES, key="runs_status")
    text = c3.text_input("Search (id, name, notes, owner)", key="runs_text")
    tag = c4.text_input("Tag", key="runs_tag")
    since = c5.date_input("Created since", value=None, key="runs_since")
    since_ts = datetime.combine(since, time.min).timestamp() if since else None
    return (None if task == "(all)" else task), statuses, text.strip(), tag.strip(), since_ts


def selected_actions(chosen: list[api.RunRead]) -> None:
    if not chosen:
        st.caption("Select rows to open, cancel, resume, clone or delete runs.")
        return
    ids = ", ".join(r.id for r in chosen)
    st.markdown(f"**Selected:** {ids}")
    cols = st.columns(6)
    first = chosen[0]
    if cols[0].button("Open dashboard", disabled=len(chosen) != 1):
        st.session_state[SELECTED_RUN] = first.id
        st.switch_page("pages/dashboard.py")
    if cols[1].button("Cancel"):
        for r in chosen:
            st.toast(f"{r.id}: {api.cancel_run(r.id)}")
    if cols[2].button("Resume"):
        for r in chosen:
            try:
                api.resume_run(r.id)
                st.toast(f"{r.id}: resumed")
            except ValueError as exc:
                st.warning(str(exc))
    if cols[3].button("Clone into form", disabled=len(chosen) != 1):
        st.session_state[CLONE_REQUEST] = first.id
        st.switch_page("pages/new_run.py")
    if cols[4].button("Compare", disabled=len(chosen) < 2):
        st.session_state["compare_runs"] = [r.id for r in chosen]
        st.switch_page("pages/compare.py")
    with cols[5].popover("Delete"):
        st.write(f"Delete {len(chosen)} run(s) with all their files and rows?")
        if st.button("Delete for good", type="primary"):
            for r in chosen:
                try:
                    api.delete_run(r.id)
                except ValueError as exc:
                    st.warning(str(exc))
            st.rerun()
