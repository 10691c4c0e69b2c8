"""State handling for the New run page: which values the form shows, presets, YAML import, clone."""

from __future__ import annotations

from typing import Any

import streamlit as st
import yaml

from workbench import api

CLONE_REQUEST = "clone_request"  # session-state key set by the Runs page: run id to clone into the form
TASK_REQUEST = "task_request"  # task the picker should switch to on the next run of the page
TASK_PICKER = "task_picker"


def load_values(task: str, values: dict[str, Any], *, source: str) -> None:
    """Replace the form's values; a new generation gives the widgets new keys so the new values show."""
    st.session_state[f"form_values_{task}"] = values
    st.session_state[f"form_source_{task}"] = source
    st.session_state[f"form_generation_{task}"] = st.session_state.get(f"form_generation_{task}", 0) + 1


def form_values(task: str) -> tuple[dict[str, Any], int, str]:
    if f"form_values_{task}" not in st.session_state:
        presets = api.presets(task)
        cfg = api.load_preset(task, "default") if "default" in presets else api.default_config(task)
        load_values(task, api.to_dict(cfg), source="preset default" if "default" in presets else "schema defaults")
    return (
        st.session_state[f"form_values_{task}"],
        st.session_state[f"form_generation_{task}"],
        st.session_state[f"form_source_{task}"],
    )


def apply_pending_requests() -> None:
    """Run before the task picker is drawn: a clone or an import may switch the task."""
    run_id = st.session_state.pop(CLONE_REQUEST, None)
    if run_id:
        _clone(run_id)
    task = st.session_state.pop(TASK_REQUEST, None)
    if task:
        st.session_state[TASK_PICKER] = task


def _clone(run_id: str) -> None:
    cfg = api.run_config(run_id)
    task = cfg.task  # type: ignore[attr-defined]
    st.session_state[TASK_REQUEST] = task
    st.session_state["form_name"] = f"{api.get_run(run_id).name}-clone"
    load_values(task, api.to_dict(cfg), source=f"clone of run {run_id}")


def yaml_import_box(task: str) -> None:
    """Upload a YAML config: valid -> loaded into the form; invalid -> every error shown, raw values still loaded."""
    upload = st.file_uploader("Import YAML", type=["yaml", "yml"], key=f"yaml_upload_{task}")
    if upload is None or st.session_state.get("yaml_upload_seen") == (upload.name, upload.size):
        return
    st.session_state["yaml_upload_seen"] = (upload.name, upload.size)
    text = upload.getvalue().decode("utf-8", "replace")
    try:
        cfg = api.validate_yaml(text, source=upload.name)
    except api.ConfigError as exc:
        st.error(str(exc))
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            return
        if isinstance(data, dict) and data.get("task") == task:
            load_values(task, data, source=f"{upload.name} (has errors)")
        return
    st.session_state[TASK_REQUEST] = cfg.task  # type: ignore[attr-defined]
    load_values(cfg.task, api.to_dict(cfg), source=upload.name)  # type: ignore[attr-defined]
    st.rerun()
