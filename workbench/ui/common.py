"""Small Streamlit pieces shared by pages: run picker, status line, progress with ETA, time formatting."""

from __future__ import annotations

import time

import streamlit as st

from workbench import api
from workbench.ui.status import status_fields

# Material Symbols ship with Streamlit's frontend (no network, no emoji font needed on the viewing machine)
STATUS_ICON = {
    "queued": ":material/schedule:",
    "starting": ":material/rocket_launch:",
    "running": ":material/play_circle:",
    "completed": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/stop_circle:",
    "lost": ":material/help:",
}
SELECTED_RUN = "selected_run"  # session-state key: the run the dashboard/checkpoints pages show


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def run_label(run: api.RunRead) -> str:
    # no status here: a select box keeps option labels from its first render, so a status would go stale
    return f"{run.id} · {run.name} · {run.task}" + (f" · {run.kind}" if run.kind != "train" else "")


RUN_PARAM = "run"  # /dashboard?run=ID, /checkpoints?run=ID
RUNS_PARAM = "runs"  # /compare?runs=A,B


def pick_run(key: str, runs: list[api.RunRead] | None = None) -> api.RunRead | None:
    """A select box of runs (newest first) that follows the URL: `?run=ID` opens that run, a choice rewrites the URL
    (so a reload or a shared link shows the same run), and the choice carries over to the other run pages.

    An id in the URL that names no run says so and selects nothing, rather than quietly showing the newest run.
    """
    runs = list(runs if runs is not None else api.list_runs(limit=300))
    wanted = st.query_params.get(RUN_PARAM)
    if wanted and all(r.id != wanted for r in runs):
        found = _find_run(wanted)  # older than the list, or a unique prefix of an id
        if found is not None:
            runs.insert(0, found)
            wanted = st.query_params[RUN_PARAM] = found.id
        else:
            st.error(f"There is no run `{wanted}` (the id in this page's address). Choose one below.")
    if not runs:
        st.info("No runs yet. Start one on the **New run** page, or with `workbench run CONFIG.yaml`.")
        st.page_link("pages/new_run.py", label="Go to New run")
        return None
    by_id = {r.id: r for r in runs}
    if wanted is None:
        remembered = st.session_state.get(SELECTED_RUN)
        wanted = remembered if remembered in by_id else runs[0].id
        st.query_params[RUN_PARAM] = wanted
    target = wanted if wanted in by_id else None
    if st.session_state.get(key) != target:
        st.session_state[key] = target  # before the widget: the URL decides what it shows

    def follow() -> None:  # the user's choice goes into the URL before the page runs again
        if st.session_state[key] is not None:
            st.query_params[RUN_PARAM] = st.session_state[key]

    # index 0 only to keep the box unclearable (the session state set above decides what it shows); None for
    # the unknown-id case, where the box must show no run at all
    chosen = st.selectbox(
        "Run", list(by_id), index=None if target is None else 0, key=key, on_change=follow, placeholder="Choose a run",
        format_func=lambda i: run_label(by_id[i]),
    )
    if chosen is None:
        return None
    st.session_state[SELECTED_RUN] = chosen
    return by_id[chosen]


def pick_runs(key: str, runs: list[api.RunRead]) -> list[str]:
    """A multiselect of runs that follows `?runs=A,B` the way `pick_run` follows `?run=ID`; returns the chosen ids."""
    by_id = {r.id: r for r in runs}
    param = st.query_params.get(RUNS_PARAM)
    if param is not None:
        wanted = [i for i in param.split(",") if i]
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            st.error(f"No run {', '.join(f'`{i}`' for i in unknown)} (from this page's address); the others are shown.")
        target = [i for i in wanted if i in by_id]
    else:
        target = [i for i in st.session_state.get("compare_runs", []) if i in by_id]
        if target:
            st.query_params[RUNS_PARAM] = ",".join(target)
    if st.session_state.get(key) != target:
        st.session_state[key] = target

    def follow() -> None:
        st.query_params[RUNS_PARAM] = ",".join(st.session_state[key])

    chosen = st.multiselect("Runs", list(by_id), key=key, on_change=follow, format_func=lambda i: run_label(by_id[i]))
    st.session_state["compare_runs"] = chosen
    return chosen


ACTIVE = ("queued", "starting", "running")


def cancel_with_confirmation(runs: list[api.RunRead], *, key: str, label: str = "Cancel") -> bool:
    """A Cancel pop-up that asks before it stops anything (training is lost work if the click was a slip).

    Only the active runs among `runs` are cancelled; True once they were (the caller redraws the page).
    """
    active = [r for r in runs if r.status in ACTIVE]
    with st.popover(label, disabled=not active):
        st.write(f"Stop {len(active)} active run(s)? Each saves a checkpoint and ends `cancelled`; Resume continues it.")
        if st.button("Cancel the run(s)", type="primary", key=key):
            for r in active:
                st.toast(f"{r.id}: {api.cancel_run(r.id)}")
            return True
    return False


def _find_run(run_id: str) -> api.RunRead | None:
    try:
        return api.get_run(run_id)
    except api.RunNotFound:
        return None


def status_line(run: api.RunRead) -> None:
    """An ended run's status line (an active run's is drawn by the Dashboard's live view, from its poll)."""
    fields = status_fields(run)
    cols = st.columns(4)
    for i, (col, (label, value)) in enumerate(zip(cols, fields["metrics"], strict=True)):
        col.metric(f"{label} {STATUS_ICON.get(run.status, '')}" if i == 0 else label, value)
    if fields["progress"]:
        st.progress(fields["progress"]["fraction"], text=fields["progress"]["text"])
    elif fields["phase"]:
        st.caption(fields["phase"])
    if run.error:
        st.error(f"{run.error}")
        if run.traceback:
            with st.expander("Traceback / end of the log"):
                st.code(run.traceback, language=None)
