"""Small Streamlit pieces shared by pages: run picker, status line, progress with ETA, time formatting."""

from __future__ import annotations

import time

import streamlit as st

from workbench import api

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


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def run_label(run: api.RunRead) -> str:
    # no status here: a select box keeps option labels from its first render, so a status would go stale
    return f"{run.id} · {run.name} · {run.task}" + (f" · {run.kind}" if run.kind != "train" else "")


def pick_run(key: str, runs: list[api.RunRead] | None = None) -> api.RunRead | None:
    """A select box of runs (newest first) that remembers the choice across pages."""
    runs = runs if runs is not None else api.list_runs(limit=300)
    if not runs:
        st.info("No runs yet. Start one on the **New run** page.")
        return None
    ids = [r.id for r in runs]
    wanted = st.session_state.get(SELECTED_RUN)
    index = ids.index(wanted) if wanted in ids else 0
    by_id = {r.id: r for r in runs}
    chosen = st.selectbox("Run", ids, index=index, key=key, format_func=lambda i: run_label(by_id[i]))
    st.session_state[SELECTED_RUN] = chosen
    return by_id[chosen]


def status_line(run: api.RunRead) -> None:
    p = api.progress(run)
    cols = st.columns(4)
    cols[0].metric(f"Status {STATUS_ICON.get(run.status, '')}", run.status)
    cols[1].metric("Duration", fmt_duration(run.duration_s))
    best = "-" if run.best_value is None else f"{run.best_value:.4f}"
    cols[2].metric(f"Best {run.monitor_key or ''}", best)
    cols[3].metric("ETA", fmt_duration(p.eta_s) if p.eta_s is not None else "-")
    if p.fraction is not None:
        text = f"{p.done:g} / {p.total:g} {p.unit}"
        if p.rate:
            text += f" · {p.rate:.2f} {p.unit}/s"
        if run.phase:
            text += f" · {run.phase}"
        st.progress(p.fraction, text=text)
    elif run.phase:
        st.caption(run.phase)
    if run.error:
        st.error(f"{run.error}")
        if run.traceback:
            with st.expander("Traceback / end of the log"):
                st.code(run.traceback, language=None)
