"""The dashboard's live panel: a fragment that refreshes every second while the run is active.

What a refresh costs is in docs/dashboard.md. In short: one summary query tells which series changed; only those
are read again (the rest come from this session's cache); charts are Vega-Lite dicts whose spec stays the same
while points arrive, so the browser updates the data of the views it has instead of building them again; and only
the charts a user looks at are drawn: pinned ones, the first few of each group, or those matching the search.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

import pandas as pd
import streamlit as st

from workbench import api
from workbench.ui.charts import group_keys
from workbench.ui.common import cancel_with_confirmation, fmt_time, status_line
from workbench.ui.downloads import export_button
from workbench.ui.profile import profile_section
from workbench.ui.live_charts import (
    ChartView,
    Domain,
    chart_frame,
    overlay_frame,
    overlay_spec,
    points_caption,
    series_spec,
    x_domain,
)

MAX_POINTS = 2000  # per series in a live chart: the browser redraws this smoothly every second
REFRESH_S = 1.0
FIRST_CHARTS = 6  # per group; the rest are drawn on request (the CTR dashboard had 48 charts on a 9,600 px page)
CACHE = "dashboard_series"  # session-state key: {"run": id, "view": ChartView, "items": {key: CachedSeries}}


@dataclass(frozen=True)
class DashboardView(ChartView):
    search: str = ""
    pinned: tuple[str, ...] = ()


@dataclass
class CachedSeries:
    signature: tuple  # (count, last_step, last) of the key's summary row: a new point changes it
    series: api.Series
    frame: pd.DataFrame
    smoothed: bool


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


def live_panel(run_id: str, view: DashboardView, live: bool) -> None:
    @st.fragment(run_every=REFRESH_S if live else None)
    def panel() -> None:
        run = api.get_run(run_id)
        status_line(run)
        charts(run, view)
        profile_section(run)
        log_and_events(run_id)
        if live and run.status in api.ENDED:
            st.rerun()  # the run ended: redraw the page once without the refresh timer

    panel()


def matches(key: str, search: str) -> bool:
    """Every word of the search occurs in the key (case-insensitive): `valid sdr` finds valid/si_sdr_vocals."""
    return all(word in key.lower() for word in search.lower().split())


def charts(run: api.RunRead, view: DashboardView) -> None:
    summaries = api.metric_summaries([run.id])
    if summaries.empty:
        st.info("No metrics yet: the first ones appear a few seconds after the run starts.")
        return
    summaries = summaries[[matches(k, view.search) for k in summaries["key"]]].set_index("key", drop=False)
    if summaries.empty:
        st.info(f"No metric of this run matches “{view.search}”.")
        return
    results = summaries[summaries["count"] == 1]
    plotted = summaries[summaries["count"] > 1]
    cache = _series_cache(run.id, view)
    domain = x_domain(plotted, view, run.started_at, run.ended_at or time.time())

    def draw(key: str) -> None:
        item = _cached(cache, run.id, key, plotted.loc[key], view)
        st.markdown(f"**{_escape(key)}**")
        spec = series_spec(item.frame, smoothed=item.smoothed, downsampled=item.series.downsampled, view=view, domain=domain)
        st.vega_lite_chart(item.frame, spec, width="stretch")
        st.caption(points_caption(item.series))

    if not results.empty:
        st.subheader("results")
        st.caption("Metrics with a single value so far (test metrics, evaluations): a table, not one-point charts.")
        table = results[["key", "last", "last_step"]].rename(columns={"last": "value", "last_step": "step"})
        st.dataframe(table, hide_index=True, width="stretch")
    pinned = [k for k in view.pinned if k in plotted.index]
    if pinned:
        st.subheader("pinned")
        _grid(pinned, draw)
    if not view.search:
        overview(run, plotted, cache, view, domain)
    rest = [k for k in plotted.index if k not in pinned]
    for phase, group in group_keys(rest).items():
        st.subheader(phase)
        shown = group
        if len(group) > FIRST_CHARTS and not view.search:
            if not st.toggle(f"Show all {len(group)} {phase} charts", key=f"all_{phase}"):
                shown = group[:FIRST_CHARTS]
                st.caption(f"{len(group) - FIRST_CHARTS} more not drawn: " + ", ".join(group[FIRST_CHARTS:]))
        _grid(shown, draw)


def _grid(keys: list[str], draw) -> None:  # type: ignore[no-untyped-def]
    cols = st.columns(3)
    for i, key in enumerate(keys):
        with cols[i % 3]:
            draw(key)


def overview(run: api.RunRead, plotted: pd.DataFrame, cache: dict, view: DashboardView, domain: Domain | None) -> None:
    """The task's overlay charts (e.g. CTR infer vs train AUC per pass), before the per-key charts."""
    wanted = {title: [k for k in ks if k in plotted.index] for title, ks in api.tasks()[run.task].overlays.items()}
    wanted = {title: ks for title, ks in wanted.items() if len(ks) >= 2}
    if not wanted:
        return
    st.subheader("overview")
    cols = st.columns(min(2, len(wanted)))
    for i, (title, ks) in enumerate(wanted.items()):
        frame = overlay_frame({k: _cached(cache, run.id, k, plotted.loc[k], view).frame for k in ks})
        with cols[i % len(cols)]:
            st.markdown(f"**{_escape(title)}**")
            st.vega_lite_chart(frame, overlay_spec(frame, ks, view=view, domain=domain), width="stretch")


def _series_cache(run_id: str, view: DashboardView) -> dict[str, CachedSeries]:
    """This session's series of the run, valid for one way of drawing them (smoothing, x axis)."""
    drawing = replace(view, search="", pinned=())
    cache = st.session_state.get(CACHE)
    if cache is None or cache["run"] != run_id or cache["view"] != drawing:
        cache = {"run": run_id, "view": drawing, "items": {}}
        st.session_state[CACHE] = cache
    return cache["items"]


def _cached(cache: dict[str, CachedSeries], run_id: str, key: str, summary: pd.Series, view: ChartView) -> CachedSeries:
    """The key's series, read again only when its summary says a point arrived since the last read."""
    signature = (int(summary["count"]), int(summary["last_step"]), float(summary["last"]))
    item = cache.get(key)
    if item is None or item.signature != signature:
        series = api.series(run_id, key, max_points=MAX_POINTS)
        frame, smoothed = chart_frame(series, key, view)
        item = cache[key] = CachedSeries(signature, series, frame, smoothed)
    return item


def _escape(text: str) -> str:
    """Metric keys as literal text in Markdown (underscores, brackets and colons are Markdown or Streamlit syntax)."""
    return re.sub(r"([\\`*_\[\]<>:#|~$])", r"\\\1", text)


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
