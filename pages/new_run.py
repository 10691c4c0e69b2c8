"""New run: pick a task and a preset, edit the generated form, validate, launch. YAML import/export."""

import streamlit as st

from workbench import api
from workbench.ui.form import render_config_form
from workbench.ui.newrun import (
    INTRO,
    TASK_PICKER,
    apply_pending_requests,
    form_errors,
    form_values,
    load_values,
    show_outcome,
    submit,
    yaml_import_box,
)
from workbench.ui.study_form import show_errors, study_section, suggest_button

st.title("New run")
st.markdown(INTRO)
apply_pending_requests()
specs = api.tasks()
task_names = [t for t in specs if not t.startswith("_")]
task = st.selectbox("Task", task_names, format_func=lambda t: specs[t].title, key=TASK_PICKER)
st.caption(specs[task].description)

presets = api.presets(task)
cols = st.columns([3, 1, 4])
preset = cols[0].selectbox("Preset", ["(schema defaults)", *presets], key=f"preset_{task}")
if cols[1].button("Load preset", width="stretch"):
    cfg = api.default_config(task) if preset == "(schema defaults)" else api.load_preset(task, preset)
    load_values(task, api.to_dict(cfg), source=f"preset {preset}")
with cols[2]:
    yaml_import_box(task)

values, generation, source = form_values(task)
st.caption(f"Form loaded from: {source}")
suggest_button(task)
with st.form(f"config_form_{task}_{generation}"):
    name = st.text_input("Run name", value=st.session_state.get("form_name", task), key=f"run_name_{task}_{generation}")
    tags = st.text_input("Tags (comma separated)", value="", key=f"run_tags_{task}_{generation}")
    raw = render_config_form(api.config_class(task), values, f"{task}:{generation}", form_errors(task, generation))
    study = study_section(task)
    c1, c2, c3 = st.columns(3)
    validate_clicked = c1.form_submit_button("Validate", width="stretch")
    launch_clicked = c2.form_submit_button("Launch", type="primary", width="stretch")
    study_clicked = c3.form_submit_button("Start study", width="stretch", help="Search the settings marked above")

if validate_clicked or launch_clicked or study_clicked:
    submit(task, generation, raw, name=name, tags=tags, launch=launch_clicked, study=study if study_clicked else None)
show_outcome(task, generation)
show_errors(task)

if st.session_state.get("last_config_yaml"):
    st.download_button("Export the last valid config as YAML", st.session_state["last_config_yaml"], file_name=f"{task}.yaml", mime="text/yaml")
