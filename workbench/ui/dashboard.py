"""The Dashboard: what a run is doing, drawn by the live view (status line, results, charts, log, events).

The page works out which charts to draw (the pinned ones, the task's overview, the first few of each group, or those
matching the search) and hands them to the live view (live_view.py), which follows the run by itself with a small
poll a second: new points, the status line, and a token of the chart plan. The view asks the controls-and-charts
fragment to rerun only when that token differs from the one it was drawn with (a new metric key, a series passing
the few-points mark; at most every 5 s once charts are drawn), and the page when the run ended: nothing on the page
redraws on a timer while a run is watched; docs/dashboard.md has what watching costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from workbench import api
from workbench.ui.charts import group_keys
from workbench.ui.common import cancel_with_confirmation, fmt_time, status_line
from workbench.ui.downloads import export_button
from workbench.ui.live_charts import ChartView, Shape, overlay_spec, series_spec
from workbench.ui.live_data import plan_token
from workbench.ui.live_view import live_view
from workbench.ui.profile import profile_section
from workbench.ui.status import status_fields

FIRST_CHARTS = 6  # per group; the rest are drawn on request (the CTR dashboard had 48 charts on a 9,600 px page)


@dataclass(frozen=True)
class DashboardView(ChartView):
    search: str = ""
    pinned: tuple[str, ...] = ()


def run_actions(run: api.RunRead) -> None:
    """Cancel (asks first), resume, and the export of every stored point (outside the live fragment: a download
    control inside an auto-refreshing fragment fails now and then, reference/environment.md)."""
    cols = st.columns([1, 1, 3])
    with cols[0]:
        if run.status not in api.ENDED and cancel_with_confirmation([run], key=f"cancel_{run.id}", label="Cancel run"):
            st.rerun()
    if run.status in ("failed", "cancelled", "lost") and cols[1].button("Resume run", key=f"resume_{run.id}"):
        api.resume_run(run.id)
        st.rerun()
    with cols[2]:
        export_button(run.id)


def chart_controls(run: api.RunRead) -> DashboardView:
    """Search, pins (kept per task across sessions), smoothing, x axis and log scale for the run's charts."""
    keys = api.metric_keys(run.id)
    stored = api.pinned_metrics(run.task)
    c1, c2 = st.columns([2, 3])
    search = c1.text_input("Search metrics", key="metric_search", placeholder="e.g. auc, valid/, sdr")
    pin_key = f"pinned_{run.task}"

    def save_pins() -> None:
        api.set_pinned_metrics(run.task, st.session_state[pin_key])

    options = sorted(set(keys) | set(stored))
    pinned = c2.multiselect(
        f"Pinned charts (kept for every {run.task} run)", options, default=stored, key=pin_key, on_change=save_pins
    )
    c3, c4, c5 = st.columns([3, 2, 2])
    smoothing = c3.slider("Smoothing of per-step training series (debiased EMA)", 0.0, 0.999, 0.6, 0.001, key="smoothing")
    x_axis = c4.radio("x axis", ["step", "wall"], horizontal=True, key="x_axis", format_func=lambda x: {"wall": "local time"}.get(x, x))
    log_y = c5.toggle("Log scale (y)", key="log_y")
    return DashboardView(smoothing=smoothing, x=x_axis, log_y=log_y, search=search.strip(), pinned=tuple(pinned))


def live_section(run: api.RunRead) -> None:
    """The chart controls and the live panel, in a fragment: a change of a control, or the live view asking for a
    rerun because the chart plan changed, redraws this part of the page only (the run picker, actions and info above
    are not rebuilt and re-sent). When the run ended, the whole page is drawn again: its actions change too."""
    was_live = run.status not in api.ENDED

    @st.fragment
    def section() -> None:
        now = api.get_run(run.id)  # a fragment's rerun keeps the arguments of the page's run
        live = now.status not in api.ENDED
        if was_live and not live:
            st.rerun(scope="app")
        live_panel(now, chart_controls(now), live)

    section()


def live_panel(run: api.RunRead, view: DashboardView, live: bool) -> None:
    """The "Show all" toggles of long groups (with the controls above), the status line (Streamlit's for an ended
    run, the live view's while it is active), then the live view with the plan it draws."""
    summaries = api.metric_summaries([run.id])
    shown = summaries[summaries["key"].map(lambda k: matches(k, view.search)).astype(bool)].set_index("key", drop=False)
    plotted = shown[shown["count"] > 1]
    pinned = [k for k in view.pinned if k in plotted.index]
    groups = group_keys([k for k in plotted.index if k not in pinned])
    sections = chart_sections(run, plotted, pinned, groups, show_all_toggles(groups, view), view)
    if not live:
        status_line(run)
    live_view(
        run, sections, view, live=live, key=f"live_{run.id}",
        results=results_rows(shown[shown["count"] == 1]),
        message=empty_message(summaries, shown, view),
        status=status_fields(run) if live else None,
        plan=plan_token(run, summaries),
    )  # fmt: skip
    profile_section(run)


def empty_message(summaries: pd.DataFrame, shown: pd.DataFrame, view: DashboardView) -> str | None:
    if summaries.empty:
        return "No metrics yet: the first ones appear a few seconds after the run starts."
    if shown.empty:
        return f"No metric of this run matches “{view.search}”."
    return None


def results_rows(results: pd.DataFrame) -> list[list]:
    """Metrics with a single value so far (test metrics, evaluations): a table in the live view, not one-point charts."""
    return [[key, f"{value:.6g}", int(step)] for key, value, step in results[["key", "last", "last_step"]].itertuples(index=False)]


def show_all_toggles(groups: dict[str, list[str]], view: DashboardView) -> set[str]:
    """A toggle per group with more than FIRST_CHARTS charts (not while searching); the groups drawn in full."""
    more = {phase: group for phase, group in groups.items() if len(group) > FIRST_CHARTS and not view.search}
    if not more:
        return set(groups)
    cols = st.columns(min(4, len(more)))
    return {phase for phase in groups if phase not in more} | {
        phase for i, (phase, g) in enumerate(more.items()) if cols[i % len(cols)].toggle(f"Show all {len(g)} {phase} charts", key=f"all_{phase}")
    }


def matches(key: str, search: str) -> bool:
    """Every word of the search occurs in the key (case-insensitive): `valid sdr` finds valid/si_sdr_vocals."""
    return all(word in key.lower() for word in search.lower().split())


def chart_sections(
    run: api.RunRead, plotted: pd.DataFrame, pinned: list[str], groups: dict[str, list[str]], shown_all: set[str], view: DashboardView
) -> list[dict]:
    """What the live view draws: sections of charts (pinned, the task's overview, each group) with their specs."""

    def chart(key: str) -> dict:
        row = plotted.loc[key]
        shape = Shape.of(int(row["count"]), float(row["min"]), float(row["max"]))
        return {"id": key, "title": key, "keys": [key], "spec": series_spec(shape, view), "caption": True}

    sections = []
    if pinned:
        sections.append({"title": "pinned", "charts": [chart(k) for k in pinned]})
    if not view.search:
        sections += overview(run, plotted, view)
    for phase, group in groups.items():
        note = None
        if phase not in shown_all:
            note = f"{len(group) - FIRST_CHARTS} more not drawn (“Show all {len(group)} {phase} charts” above): " + ", ".join(group[FIRST_CHARTS:])
            group = group[:FIRST_CHARTS]
        sections.append({"title": phase, "note": note, "charts": [chart(k) for k in group]})
    return sections


def overview(run: api.RunRead, plotted: pd.DataFrame, view: DashboardView) -> list[dict]:
    """The task's overlay charts (e.g. CTR infer vs train AUC per pass), before the per-key charts."""
    wanted = {title: [k for k in ks if k in plotted.index] for title, ks in api.tasks()[run.task].overlays.items()}
    charts = []
    for title, keys in wanted.items():
        if len(keys) < 2:
            continue
        rows = plotted.loc[keys]
        shape = Shape.of(int(rows["count"].max()), float(rows["min"].min()), float(rows["max"].max()))
        charts.append({"id": f"overview:{title}", "title": title, "keys": keys, "spec": overlay_spec(keys, shape, view), "caption": False})
    return [{"title": "overview", "charts": charts}] if charts else []


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
