"""Runs page pieces: filters, the column pickers, the table that follows status changes, actions on selected runs."""

from __future__ import annotations

from datetime import datetime, time

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from workbench import api
from workbench.ui.common import ACTIVE, RUN_PARAM, RUNS_PARAM, SELECTED_RUN, cancel_with_confirmation
from workbench.ui.newrun import CLONE_REQUEST

STATUSES = [s.value for s in api.RunStatus]  # every status the store allows, `pruned` included
WATCH_S = 3.0  # status poll while runs are active: one two-column read, nothing a training run would notice
TABLE_GENERATION = "runs_table_generation"  # bumped to give the table a new key, which clears its selection
FLASH = "runs_flash"
CONFIG_COLUMNS, METRIC_COLUMNS, METRIC_STAT = "runs_config_columns", "runs_metric_columns", "runs_metric_stat"


def filters() -> tuple[str | None, list[str], str, str, float | None]:
    c1, c2, c3, c4, c5 = st.columns([1, 2, 2, 1, 1])
    task = c1.selectbox("Task", ["(all)", *api.tasks()], key="runs_task")
    statuses = c2.multiselect("Status", STATUSES, key="runs_status")
    text = c3.text_input("Search (id, name, notes, owner)", key="runs_text")
    tag = c4.text_input("Tag", key="runs_tag")
    since = c5.date_input("Created since", value=None, key="runs_since")
    since_ts = datetime.combine(since, time.min).timestamp() if since else None
    return (None if task == "(all)" else task), statuses, text.strip(), tag.strip(), since_ts


def quick_run_offer() -> None:
    """The empty state: no run anywhere yet, so offer the fastest way to see one."""
    st.info("No runs yet. Launch a quick run (each task's `quick` preset trains in about a minute) or build one on **New run**.")
    tasks = {name: spec for name, spec in api.tasks().items() if "quick" in api.presets(name)}
    if not tasks:
        st.page_link("pages/new_run.py", label="Go to New run")
        return
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    task = c1.selectbox("Task", list(tasks), format_func=lambda t: tasks[t].title, key="quick_task")
    if c2.button("Launch a quick run", type="primary"):
        run = api.launch_run(api.load_preset(task, "quick"), name=f"{task}-quick", tags=["quick"])
        st.session_state[SELECTED_RUN] = run.id
        st.session_state["flash"] = f"Launched run {run.id} ({task}, quick preset)"
        st.switch_page("pages/dashboard.py", query_params={RUN_PARAM: run.id})


def column_pickers(table: api.RunsTable) -> None:
    """Extra columns: hyper-parameters by config path and metrics by key (last, min or max), as in MLflow's run list.
    The choice lives in session state, so the table is built with it before these widgets are drawn."""
    with st.expander("Columns: hyper-parameters and metrics"):
        c1, c2, c3 = st.columns([3, 3, 1])
        chosen_config = st.session_state.get(CONFIG_COLUMNS, [])
        chosen_metrics = st.session_state.get(METRIC_COLUMNS, [])
        # options keep what is chosen, even when the filters hide every run that has it
        c1.multiselect("Config values", list(dict.fromkeys([*table.config_paths, *chosen_config])), key=CONFIG_COLUMNS)
        c2.multiselect("Metrics", list(dict.fromkeys([*table.metric_keys, *chosen_metrics])), key=METRIC_COLUMNS)
        c3.radio("Metric value", list(api.METRIC_STATS), key=METRIC_STAT, horizontal=False)


def chosen_columns() -> tuple[list[str], list[str], str]:
    return (
        list(st.session_state.get(CONFIG_COLUMNS, [])),
        list(st.session_state.get(METRIC_COLUMNS, [])),
        st.session_state.get(METRIC_STAT, "last"),
    )


def runs_table(runs: list[api.RunRead], table: api.RunsTable) -> list[api.RunRead]:
    """The table with row selection; returns the selected runs.

    The selection is a list of row numbers, so it is cleared whenever the rows change (a run appeared or was
    deleted): a number must never come to point at another run.
    """
    ids = [r.id for r in runs]
    if st.session_state.get("runs_table_ids") != ids:
        st.session_state["runs_table_ids"] = ids
        clear_selection()
    key = f"runs_table_{st.session_state.get(TABLE_GENERATION, 0)}"
    event = st.dataframe(
        table.frame,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="multi-row",
        key=key,
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "best": st.column_config.NumberColumn("best", format="%.4f"),
            "started": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        },
    )
    rows = event.selection.rows if event and event.selection else []
    return [runs[i] for i in rows if i < len(runs)]


def clear_selection() -> None:
    st.session_state[TABLE_GENERATION] = st.session_state.get(TABLE_GENERATION, 0) + 1


def watch_statuses(runs: list[api.RunRead]) -> None:
    """While some shown run is active, poll the statuses of the shown runs and redraw the page when one changes."""
    shown = {r.id: r.status for r in runs}
    if not any(s in ACTIVE for s in shown.values()):
        return

    @st.fragment(run_every=WATCH_S)
    def watch() -> None:
        if api.run_statuses(list(shown)) != shown:
            st.rerun()  # from a fragment this redraws the whole page: fresh rows, statuses and progress
        st.caption(f"Statuses refresh every {WATCH_S:g} s while runs are active.")

    watch()


def selected_actions(chosen: list[api.RunRead]) -> None:
    if not chosen:
        st.caption("Select rows to open, cancel, resume, clone, compare or delete runs.")
        return
    st.markdown(f"**Selected:** {', '.join(r.id for r in chosen)}")
    first = chosen[0]
    cols = st.columns(7)
    if len(chosen) == 1:
        cols[0].page_link("pages/dashboard.py", label="Open dashboard", query_params={RUN_PARAM: first.id})
        cols[1].page_link("pages/checkpoints.py", label="Checkpoints", query_params={RUN_PARAM: first.id})
    with cols[2]:
        if cancel_with_confirmation(chosen, key="confirm_cancel"):
            st.rerun()
    if cols[3].button("Resume"):
        for r in chosen:
            try:
                api.resume_run(r.id)
                st.toast(f"{r.id}: resumed")
            except ValueError as exc:
                st.warning(f"{r.id}: {exc}")
    if cols[4].button("Clone into form", disabled=len(chosen) != 1):
        st.session_state[CLONE_REQUEST] = first.id
        st.switch_page("pages/new_run.py")
    if cols[5].button("Compare", disabled=len(chosen) < 2):
        st.session_state["compare_runs"] = [r.id for r in chosen]
        st.switch_page("pages/compare.py", query_params={RUNS_PARAM: ",".join(r.id for r in chosen)})
    _delete(cols[6], chosen)


def _delete(col: DeltaGenerator, chosen: list[api.RunRead]) -> None:
    with col.popover("Delete"):
        st.write(f"Delete {len(chosen)} run(s) ({', '.join(r.id for r in chosen)}) with all their files and rows?")
        if st.button("Delete for good", type="primary", key="confirm_delete"):
            problems = []
            for r in chosen:
                try:
                    api.delete_run(r.id)
                except ValueError as exc:
                    problems.append(f"{r.id}: {exc}")
            # nothing stays selected, and the pop-up goes with the selection: a second click cannot delete another run
            clear_selection()
            st.session_state[FLASH] = (problems, f"Deleted {len(chosen) - len(problems)} run(s).")
            st.rerun()


def show_flash() -> None:
    """What the last delete did, shown once after the page was drawn again."""
    flash = st.session_state.pop(FLASH, None)
    if flash:
        problems, done = flash
        for problem in problems:
            st.warning(problem)
        st.success(done)
