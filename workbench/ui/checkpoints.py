"""Checkpoints page pieces: the table, evaluate, fork, compare, upload and try-it sections."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from workbench import api
from workbench.ui.common import fmt_time
from workbench.ui.files import inference_url


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
    st.dataframe(frame, hide_index=True, width="stretch")
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


def open_run_link(run: api.RunRead, what: str) -> None:
    """A link to the run's Dashboard, shown right after an action started it."""
    st.page_link("pages/dashboard.py", label=f"Open {what} {run.id} on the Dashboard →", query_params={"run": run.id})


def evaluate_section(run: api.RunRead, ckpt: api.CheckpointRead) -> None:
    st.markdown("**Evaluate**: run the chosen checkpoint on the test split, or on other data, in the background.")
    data_path = st.text_input("Data path (empty: the config's test split)", key=f"eval_path_{run.id}")
    if st.button(f"Evaluate checkpoint #{ckpt.id}", key=f"eval_{ckpt.id}"):
        try:
            job = api.evaluate_checkpoint(run.id, ckpt.id, data_path.strip() or None)
        except (FileNotFoundError, ValueError) as exc:
            st.error(str(exc))
        else:
            st.success(f"Evaluation {job.id} of checkpoint #{ckpt.id} queued.")
            open_run_link(job, "evaluation")
    jobs = api.evaluations_of(run.id)
    if jobs:
        table = api.compare_summary([j.id for j in jobs])
        table.insert(1, "checkpoint", [j.parent_checkpoint_id for j in jobs])
        st.dataframe(table.drop(columns=[c for c in table.columns if c.endswith(" best")]), hide_index=True, width="stretch")


def fork_section(run: api.RunRead, ckpt: api.CheckpointRead) -> None:
    st.markdown("**Fork**: a new run that starts from this checkpoint's weights, with an edited config.")
    child = None
    with st.form(f"fork_{run.id}_{ckpt.id}"):
        name = st.text_input("Name", value=f"{run.name}-fork")
        text = st.text_area("Config (YAML)", value=api.to_yaml(api.run_config(run.id)), height=300)
        if st.form_submit_button(f"Launch fork from checkpoint #{ckpt.id}"):
            try:
                cfg = api.validate_yaml(text, source="fork config")
                child = api.fork_run(run.id, ckpt.id, cfg, name=name)
            except api.ConfigError as exc:
                st.error(str(exc))
            except (FileNotFoundError, ValueError) as exc:
                st.error(str(exc))
    if child is not None:  # below the form: a form holds only its own widgets
        st.success(f"Launched fork {child.id} from checkpoint #{ckpt.id}.")
        open_run_link(child, "fork")


def compare_section(run: api.RunRead, ckpts: list[api.CheckpointRead]) -> None:
    st.markdown("**Compare checkpoints** of this run, or with a checkpoint of another run of the same task.")
    own = [c for c in ckpts if c.kind == "checkpoint"]
    others = [r for r in api.list_runs(task=run.task, limit=200) if r.id != run.id]
    pool = {c.id: f"#{c.id} {run.id} step {c.step}" for c in own}
    for other in others[:30]:
        for c in api.checkpoints(other.id):
            if c.kind == "checkpoint":
                pool[c.id] = f"#{c.id} {other.id} step {c.step}"
    if len(pool) < 2:
        st.caption("Needs at least two checkpoints.")
        return
    ids = list(pool)
    c1, c2 = st.columns(2)
    a = c1.selectbox("A", ids, index=0, format_func=pool.get, key=f"cmp_a_{run.id}")
    b = c2.selectbox("B", ids, index=min(1, len(ids) - 1) if len(own) < 2 else len(own) - 1, format_func=pool.get, key=f"cmp_b_{run.id}")
    st.dataframe(api.compare_checkpoint_metrics([a, b]), hide_index=True, width="stretch")
    if not st.toggle("Compare the weights tensor by tensor (loads both checkpoints)", key=f"cmp_go_{run.id}"):
        return
    try:
        diffs = api.compare_checkpoint_tensors(a, b)
    except (FileNotFoundError, ValueError) as exc:
        st.error(str(exc))
        return
    st.dataframe(diffs, hide_index=True, width="stretch")
    numeric = diffs.dropna(subset=["relative_change"])
    if not numeric.empty:
        chart = alt.Chart(numeric).mark_bar().encode(x=alt.X("relative_change:Q", title="||B - A|| / ||A||"), y=alt.Y("tensor:N", sort="-x"), tooltip=["tensor", "shape", "l2_distance", "relative_change"])
        st.altair_chart(chart.properties(height=max(120, 18 * len(numeric))), width="stretch")


def upload_section(run: api.RunRead) -> None:
    st.markdown(f"**Upload** a checkpoint produced elsewhere; it is checked against this run's {run.task} model and config.")
    upload = st.file_uploader("Checkpoint file (.pt)", type=["pt", "pth", "ckpt"], key=f"upload_{run.id}")
    if upload is not None and st.button("Import checkpoint", key=f"import_{run.id}"):
        try:
            imported = api.import_checkpoint(api.run_config(run.id), upload.name, upload.getvalue())
        except ValueError as exc:
            st.error(str(exc))
        else:
            st.success(f"Imported as run {imported.id}: evaluate or fork it from its checkpoints.")


def inference_link(run_id: str, file: Path) -> str:
    """The file route of an inference output (streamed from disk, not held in the session)."""
    return inference_url(run_id, file.resolve().relative_to((api.run_dir(run_id) / "inference").resolve()).as_posix())


def try_it_section(run: api.RunRead, ckpt: api.CheckpointRead) -> None:
    spec = api.tasks()[run.task]
    st.markdown(f"**Try it**: run checkpoint #{ckpt.id} on {spec.infer_input}.")
    c1, c2 = st.columns(2)
    path = c1.text_input("Path on the server", key=f"infer_path_{run.id}")
    upload = c2.file_uploader("or upload", key=f"infer_upload_{run.id}")
    if not st.button("Run", key=f"infer_go_{run.id}_{ckpt.id}"):
        return
    if upload is not None:
        target = api.run_dir(run.id) / "inference" / "uploads" / upload.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(upload.getvalue())
        path = str(target)
    try:
        with st.spinner("running the model..."):
            files = api.infer(run.id, ckpt.id, path.strip())
    except (FileNotFoundError, ValueError) as exc:
        st.error(str(exc))
        return
    for name, file in files.items():
        if name.endswith(".wav"):
            st.markdown(f"**{name.removesuffix('.wav')}**")
            cols = st.columns([2, 3])
            cols[0].audio(file.read_bytes(), format="audio/wav")
            cols[0].link_button(f"Download {name}", inference_link(run.id, file))
            picture = files.get(name.replace(".wav", ".png"))
            if picture is not None:
                cols[1].image(str(picture), caption=f"{name.removesuffix('.wav')} spectrogram", width="stretch")
        elif not name.endswith(".png"):
            st.link_button(f"Download {name}", inference_link(run.id, file))
