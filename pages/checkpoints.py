"""Checkpoints: a run's checkpoints and outputs; download, bundle, evaluate, fork, compare, upload."""

import streamlit as st

from workbench import api
from workbench.ui.checkpoints import (
    checkpoint_table,
    compare_section,
    evaluate_section,
    fork_section,
    try_it_section,
    upload_section,
)
from workbench.ui.common import pick_run
from workbench.ui.downloads import bundle_link, checkpoint_link

st.title("Checkpoints")
run = pick_run("checkpoints_run")
if run is not None:
    ckpts = api.checkpoints(run.id)
    if not ckpts:
        st.info("This run has no checkpoints yet.")
    else:
        chosen = checkpoint_table(ckpts)
        c1, c2 = st.columns(2)
        with c1:
            checkpoint_link(run.id, chosen)
        with c2:
            bundle_link(run.id)
        has_infer = api.tasks()[run.task].infer_target is not None
        tabs = st.tabs(["Evaluate", "Fork", "Compare checkpoints", *(["Try it"] if has_infer else [])])
        tab_eval, tab_fork, tab_compare = tabs[:3]
        if has_infer:
            with tabs[3]:
                try_it_section(run, chosen)
        with tab_eval:
            evaluate_section(run, chosen)
        with tab_fork:
            fork_section(run, chosen)
        with tab_compare:
            compare_section(run, ckpts)
    with st.expander("Upload a checkpoint"):
        upload_section(run)
