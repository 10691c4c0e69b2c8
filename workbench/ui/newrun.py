"""State handling for the New run page: which values the form shows, presets, YAML import, clone."""

from __future__ import annotations

from typing import Any

import streamlit as st
import yaml

from workbench import api
from workbench.ui.common import SELECTED_RUN

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
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict) and data.get("task") == task:
            # its values go into the form, and its problems are marked there and listed under it, with their lines
            load_values(task, data, source=f"{upload.name} (has errors)")
            generation = st.session_state[f"form_generation_{task}"]
            st.session_state[_outcome_key(task)] = {"generation": generation, "errors": exc.errors, "notes": []}
        else:
            st.error(str(exc))
        return
    st.session_state[TASK_REQUEST] = cfg.task  # type: ignore[attr-defined]
    load_values(cfg.task, api.to_dict(cfg), source=upload.name)  # type: ignore[attr-defined]
    st.rerun()


INTRO = """\
**Workbench** trains session recommenders (STAMP), streaming CTR models (PaddleRec-style) and Spleeter source
separation in the background, and keeps every run's config, metrics, log and checkpoints.
**To start:** pick a task and a preset (`quick` trains in about a minute), then **Launch**; the run opens on the
**Dashboard**, and **Runs** lists every run. Each action here is also a `workbench` command (`workbench --help`).
"""


def _outcome_key(task: str) -> str:
    return f"form_outcome_{task}"


def form_errors(task: str, generation: int) -> dict[str, list[str]]:
    """The last submit's problems by field path, for the form to mark (none once new values were loaded)."""
    outcome = st.session_state.get(_outcome_key(task))
    errors: dict[str, list[str]] = {}
    if outcome and outcome["generation"] == generation:
        for e in outcome["errors"]:
            errors.setdefault(e.path, []).append(e.message)
    return errors


def submit(
    task: str, generation: int, raw: dict[str, Any], *, name: str, tags: str, launch: bool, study: dict[str, Any] | None = None
) -> None:
    """Validate the submitted form; launch a run (or start a study, `study`) if asked and valid. The outcome is kept
    and the page drawn again, so that the form itself can mark the fields in error (it was drawn before the values
    were checked)."""
    try:
        cfg = api.validate_dict(raw)
    except api.ConfigError as exc:
        st.session_state[_outcome_key(task)] = {"generation": generation, "errors": exc.errors, "notes": []}
        st.rerun()
    notes = api.ignored_settings(cfg)
    st.session_state["last_config_yaml"] = api.to_yaml(cfg)
    st.session_state[f"form_values_{task}"] = api.to_dict(cfg)
    if study is not None:
        from workbench.ui import study_form

        st.session_state[_outcome_key(task)] = {"generation": generation, "errors": [], "notes": notes}
        study_form.start(task, cfg, study, name=name.strip() or f"{task} study")  # leaves the page if it started
        st.rerun()
    if not launch:
        st.session_state[_outcome_key(task)] = {"generation": generation, "errors": [], "notes": notes}
        st.rerun()
    st.session_state.pop(_outcome_key(task), None)
    run = api.launch_run(cfg, name=name.strip() or task, tags=api.clean_tags(tags))
    st.session_state[SELECTED_RUN] = run.id
    st.session_state["flash"] = f"Launched run {run.id}" + "".join(f"\n\nNote: {n}" for n in notes)
    st.switch_page("pages/dashboard.py", query_params={"run": run.id})


def show_outcome(task: str, generation: int) -> None:
    """Under the form's buttons: every problem of the last submit at once, or that the config is valid."""
    outcome = st.session_state.get(_outcome_key(task))
    if not outcome or outcome["generation"] != generation:
        return
    errors = outcome["errors"]
    if errors:
        listing = "\n".join(f"- `{e.path or 'config'}`" + (f" (line {e.line})" if e.line else "") + f": {e.message}" for e in errors)
        st.error(f"{len(errors)} problem(s) in the config (the fields in error are marked in the form above); nothing was launched:\n\n{listing}")
        return
    for note in outcome["notes"]:
        st.warning(note)
    st.success("The config is valid.")
