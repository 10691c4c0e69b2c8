"""The Dashboard's profiler section (`profiling: true`): where the step time goes, and the Chrome trace.

Drawn only for runs whose config asks for profiling, so other runs' refreshes never look for the file.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench import api
from workbench.ui.files import profile_trace_url

PHASE_ORDER = ("data", "forward", "backward", "optimizer", "other")


def phase_frame(summary: dict) -> pd.DataFrame:
    """One row per phase: its share of the recorded steps' time and its milliseconds per step."""
    steps = max(1, summary["recorded_steps"])
    ms = summary.get("phase_ms", {})
    step_ms = summary["step_ms"]
    rows = [{"phase": p, "share": summary["phase_share"][p],
             "ms per step": ms[p] / steps if p in ms else summary["phase_share"][p] * step_ms}
            for p in PHASE_ORDER if p in summary["phase_share"]]
    return pd.DataFrame(rows, columns=["phase", "share", "ms per step"])


def ops_frame(summary: dict, key: str = "ops") -> pd.DataFrame:
    """The top operators as the summary lists them (self time first: what the operator itself cost)."""
    frame = pd.DataFrame(summary.get(key, []))
    order = [c for c in ("name", "calls", "self_cpu_ms", "self_cuda_ms", "cpu_total_ms") if c in frame.columns]
    return frame[order] if not frame.empty else frame


def profile_section(run: api.RunRead) -> None:
    if not run.config.get("profiling"):
        return
    summary = api.profile_summary(run.id)
    st.subheader("profile")
    if summary is None:
        window = run.config.get("profiling_wait", 0) + run.config.get("profiling_warmup", 0)
        st.caption(f"Profiling is on: steps {window + 1}-{window + run.config.get('profiling_active', 0)} are "
                   "recorded; the summary appears here once they are done.")
        return
    if "error" in summary:
        st.warning(f"No profile: {summary['error']}")
        return
    first, last = summary["steps"]
    st.caption(f"Steps {first}-{last} of this attempt on {summary['device']}: {summary['step_ms']:.1f} ms per step. "
               "Shares are of the time between two optimizer steps; `other` is what no phase covers (logging, the "
               "loop itself).")
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Step time by phase**")
        st.dataframe(phase_frame(summary), hide_index=True, width="stretch",
                     column_config={"share": st.column_config.ProgressColumn("share", format="percent", min_value=0.0,
                                                                             max_value=1.0),
                                    "ms per step": st.column_config.NumberColumn(format="%.2f")})
        if summary.get("trace_in_run_dir"):
            st.link_button(f"Download the Chrome trace ({summary['trace_bytes'] / 1e6:.1f} MB)",
                           profile_trace_url(run.id),
                           help="Open it in chrome://tracing or https://ui.perfetto.dev")
        else:
            st.caption(f"Trace: `{summary['trace']}` (profiling_dump_path, outside the run folder)")
    with right:
        st.markdown("**Top operators by self CPU time (ms, summed over the recorded steps)**")
        st.dataframe(ops_frame(summary), hide_index=True, width="stretch")
        if summary.get("ops_by_cuda"):
            st.markdown("**Top operators by self CUDA time**")
            st.dataframe(ops_frame(summary, "ops_by_cuda"), hide_index=True, width="stretch")
