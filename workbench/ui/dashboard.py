"""The dashboard's live panel: a fragment that refreshes every second while the run is active."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench import api
from workbench.ui.charts import group_keys, metric_chart, points_caption
from workbench.ui.common import fmt_time, status_line
from workbench.ui.compare import overlay_chart

MAX_POINTS = 2000  # per series in a live chart: the browser redraws this smoothly every second
REFRESH_S = 1.0


def run_actions(run: api.RunRead) -> None:
    cols = st.columns(3)
    if run.status not in api.ENDED and cols[0].button("Cancel run", key=f"cancel_{run.id}"):
        st.toast(f"{run.id}: {api.cancel_run(run.id)}")
    if run.status in ("failed", "cancelled", "lost") and cols[1].button("Resume run", key=f"resume_{run.id}"):
        api.resume_run(run.id)
        st.rerun()


def live_panel(run_id: str, smoothing: float, x_axis: str, live: bool) -> None:
    @st.fragment(run_every=REFRESH_S if live else None)
    def panel() -> None:
        run = api.get_run(run_id)
        status_line(run)
        charts(run_id, smoothing, x_axis)
        log_and_events(run_id)
        if live and run.status in api.ENDED:
            st.rerun()  # the run ended: redraw the page once without the refresh timer

    panel()


def overview(run_id: str, keys: list[str], smoothing: float, x_axis: str) -> None:
    """The task's overlay charts (e.g. CTR infer vs train AUC per pass), before the per-key charts."""
    task = api.get_run(run_id).task
    wanted = {title: tuple(k for k in ks if k in keys) for title, ks in api.tasks()[task].overlays.items()}
    wanted = {title: ks for title, ks in wanted.items() if len(ks) >= 2}
    if not wanted:
        return
    st.subheader("overview")
    cols = st.columns(min(2, len(wanted)))
    for i, (title, ks) in enumerate(wanted.items()):
        with cols[i % len(cols)]:
            frame = api.overlay_series(run_id, ks, max_points=MAX_POINTS)
            st.altair_chart(overlay_chart(frame, title, smoothing, "wall time" if x_axis == "wall" else "step", by="series"), width="stretch")


def charts(run_id: str, smoothing: float, x_axis: str) -> None:
    keys = api.metric_keys(run_id)
    if not keys:
        st.info("No metrics yet: the first ones appear a few seconds after the run starts.")
        return
    overview(run_id, keys, smoothing, x_axis)
    for phase, group in group_keys(keys).items():
        st.subheader(phase)
        cols = st.columns(min(3, len(group)))
        for i, key in enumerate(group):
            series = api.series(run_id, key, max_points=MAX_POINTS)
            with cols[i % len(cols)]:
                st.altair_chart(metric_chart(series, key, smoothing, x=x_axis), width="stretch")
                st.caption(points_caption(series))


def log_and_events(run_id: str) -> None:
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Log (tail)**")
        st.code(api.log_tail(run_id, 6000) or "(empty)", language=None)
    with right:
        st.markdown("**Events**")
        events = api.events(run_id)
        frame = pd.DataFrame([{"time": fmt_time(e.time), "event": e.kind, "message": e.message} for e in events])
        st.dataframe(frame, hide_index=True, width="stretch")


def run_info(run: api.RunRead) -> None:
    """Rename, tag and annotate a run; show where it came from and what came of it."""
    with st.expander("Run info: name, tags, notes, lineage"):
        with st.form(f"info_{run.id}"):
            name = st.text_input("Name", value=run.name)
            tags = st.text_input("Tags (comma separated)", value=", ".join(run.tags))
            notes = st.text_area("Notes", value=run.notes)
            if st.form_submit_button("Save"):
                api.update_run_info(run.id, name=name, tags=tags.split(","), notes=notes)
                st.rerun()
        st.caption(f"owner {run.owner or '-'} · attempt {run.attempt} · created {fmt_time(run.created_at)}")
        if run.parent_run_id:
            st.markdown(f"Forked from run `{run.parent_run_id}` checkpoint #{run.parent_checkpoint_id}")
        if run.kind == "evaluate":
            st.markdown(f"Evaluation on {run.eval_data or 'the test split'}")
        forks = api.forks_of(run.id)
        if forks:
            st.markdown("Forks: " + ", ".join(f"`{f.id}` ({f.status})" for f in forks))
        evaluations = api.evaluations_of(run.id)
        if evaluations:
            st.markdown("Evaluations: " + ", ".join(f"`{e.id}` of #{e.parent_checkpoint_id} ({e.status})" for e in evaluations))
