"""New run: pick a task and a preset, edit the generated form, validate, launch. YAML import/export."""

import streamlit as st

from workbench import api
from workbench.ui.common import SELECTED_RUN
from workbench.ui.form import render_config_form
from workbench.ui.newrun import TASK_PICKER, apply_pending_requests, form_values, load_values, yaml_import_box

st.title("New run")
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
with st.form(f"config_form_{task}_{generation}"):
    name = st.text_input("Run name", value=st.session_state.get("form_name", task), key=f"run_name_{task}_{generation}")
    tags = st.text_input("Tags (comma separated)", value="", key=f"run_tags_{task}_{generation}")
    raw = render_config_form(api.config_class(task), values, key_prefix=f"{task}:{generation}")
    c1, c2 = st.columns(2)
    validate_clicked = c1.form_submit_button("Validate", width="stretch")
    launch_clicked = c2.form_submit_button("Launch", type="primary", width="stretch")

if validate_clicked or launch_clicked:
    try:
        cfg = api.validate_dict(raw)
    except api.ConfigError as exc:
        st.error(f"{len(exc.errors)} problem(s) in the config — nothing was launched:\n\n" + "\n".join(f"- `{e.path or 'config'}`: {e.message}" for e in exc.errors))
    else:
        notes = api.ignored_settings(cfg)
        for note in notes:
            st.warning(note)
        st.session_state["last_config_yaml"] = api.to_yaml(cfg)
        st.session_state[f"form_values_{task}"] = api.to_dict(cfg)
        if launch_clicked:
            run = api.launch_run(cfg, name=name.strip() or task, tags=[t for t in tags.split(",") if t.strip()])
            st.session_state[SELECTED_RUN] = run.id
            st.session_state["flash"] = f"Launched run {run.id}" + "".join(f"\n\nNote: {n}" for n in notes)
            st.switch_page("pages/dashboard.py")
        else:
            st.success("The config is valid.")

if st.session_state.get("last_config_yaml"):
    st.download_button("Export the last valid config as YAML", st.session_state["last_config_yaml"], file_name=f"{task}.yaml", mime="text/yaml")
