"""Checkpoints: a run's checkpoints and outputs, with metrics at save time, size, best marker, download."""

import streamlit as st

from workbench import api
from workbench.ui.checkpoints import bundle_download, checkpoint_table, download_one
from workbench.ui.common import pick_run

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
            download_one(run.id, chosen)
        with c2:
            bundle_download(run.id)
