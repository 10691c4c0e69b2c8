"""Checkpoints page pieces: the table and the download button (bytes passed directly, outside any fragment)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench import api
from workbench.ui.common import fmt_time


def checkpoint_table(ckpts: list[api.CheckpointRead]) -> api.CheckpointRead:
    rows = []
    for c in ckpts:
        row = {
            "id": c.id,
            "best": "★" if c.is_best else "",
            "kind": c.kind,
            "step": c.step,
            "epoch": c.epoch,
            "pass": c.pass_id,
            "day": c.day,
            "size_mb": round(c.size_bytes / 1e6, 3),
            "saved": fmt_time(c.created_at),
            "path": c.path,
        }
        row.update({k: round(v, 5) for k, v in c.metrics.items()})
        rows.append(row)
    frame = pd.DataFrame(rows).dropna(axis=1, how="all")
    st.dataframe(frame, hide_index=True, use_container_width=True)
    by_id = {c.id: c for c in ckpts}
    default = next((c.id for c in reversed(ckpts) if c.is_best), ckpts[-1].id)
    ids = list(by_id)
    chosen = st.selectbox(
        "Checkpoint",
        ids,
        index=ids.index(default),
        format_func=lambda i: f"#{i} {by_id[i].kind} step {by_id[i].step}{' ★ best' if by_id[i].is_best else ''}",
        key="ckpt_pick",
    )
    return by_id[chosen]


def download_one(run_id: str, ckpt: api.CheckpointRead) -> None:
    try:
        name, data = api.checkpoint_download(run_id, ckpt.id)
    except (FileNotFoundError, api.UnsafePath) as exc:
        st.error(str(exc))
        return
    st.download_button(
        f"Download {name} ({len(data) / 1e6:.2f} MB)",
        data,
        file_name=name,
        mime="application/octet-stream",
        type="primary",
        key=f"dl_{ckpt.id}",
    )
    st.caption("Load it with `torch.load(path, weights_only=True)`: tensors and plain values only.")


def bundle_download(run_id: str) -> None:
    name, data = api.run_bundle(run_id)
    st.download_button(
        f"Download run bundle ({len(data) / 1e6:.2f} MB)",
        data,
        file_name=name,
        mime="application/zip",
        key=f"bundle_{run_id}",
        help="config.yaml, metrics.csv, train.log, and the best and latest checkpoints, in one zip",
    )
