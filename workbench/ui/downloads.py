"""Download links for pages: checkpoints, run bundles and metric exports.

Links to the file routes of `workbench ui` (workbench/ui/files.py), which stream from disk, instead of
`st.download_button`, which keeps every byte in the server's memory for as long as the session lives. The browser
fetches the file itself; the page never reads it. Under a bare `streamlit run app.py` these routes do not exist.
"""

from __future__ import annotations

import streamlit as st

from workbench import api
from workbench import formatting as fmt
from workbench.ui.files import bundle_url, checkpoint_url, metrics_url


def checkpoint_link(run_id: str, ckpt: api.CheckpointRead) -> None:
    try:
        path = api.checkpoint_source(run_id, ckpt.id)
    except (FileNotFoundError, api.UnsafePath) as exc:
        st.error(str(exc))
        return
    what = f"{path.name} as a zip" if path.is_dir() else path.name
    st.link_button(f"Download {what} ({fmt.size(ckpt.size_bytes)})", checkpoint_url(run_id, ckpt.id), type="primary")
    st.caption("Load it with `torch.load(path, weights_only=True)`: tensors and plain values only.")


def bundle_link(run_id: str) -> None:
    st.link_button(
        "Download run bundle (zip)",
        bundle_url(run_id),
        help="config.yaml, metrics.csv (every point), train.log, and the best and latest checkpoints, in one zip",
    )


def export_button(run_id: str) -> None:
    """Every stored metric point of the run (not the charts' downsampled view) as CSV or Parquet."""
    with st.container(horizontal=True):
        for fmt in api.EXPORT_FORMATS:
            st.link_button(
                f"Export metrics ({fmt.upper() if fmt == 'csv' else fmt.capitalize()})",
                metrics_url(run_id, fmt),
                help=f"Every stored point (run_id, key, step, value, wall) of run {run_id}; "
                f"the CLI: workbench export {run_id} --format {fmt}",
            )
