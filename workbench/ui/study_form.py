"""The New run form's study section: mark settings as *search* (a range or a list of choices), suggest the guide's
ranges, pick the objective, sampler, pruner and budget. The table lives inside the config form, so one submit checks
the config and the space together and reports every problem at once."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
import yaml

from workbench import api

COLUMNS = ["setting", "low", "high", "log", "step", "choices"]
SAMPLERS = ["tpe", "random", "grid", "cmaes", "gp"]
PRUNERS = ["median", "successive_halving", "hyperband", "none"]


def _table_key(task: str) -> str:
    return f"study_rows_{task}"


def _typed(rows: pd.DataFrame) -> pd.DataFrame:
    """The editor's column types, whatever the rows came from (empty cells are NaN / False / "")."""
    rows = rows.reindex(columns=COLUMNS)
    return rows.astype({"low": float, "high": float, "step": float}).assign(
        setting=rows["setting"].fillna("").astype(str), log=rows["log"].fillna(False).astype(bool), choices=rows["choices"].fillna("").astype(str)
    )


def _rows_from_space(space: dict[str, dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for path, spec in space.items():
        if "choices" in spec:
            rows.append({"setting": path, "choices": ", ".join(map(str, spec["choices"]))})
        else:
            rows.append({"setting": path, "low": spec["low"], "high": spec["high"], "log": bool(spec.get("log", False)), "step": spec.get("step")})
    return pd.DataFrame(rows, columns=COLUMNS)


def space_from_rows(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Table rows -> the SPACE.yaml mapping (a row with choices is a choice list; otherwise a range)."""
    space: dict[str, dict[str, Any]] = {}
    for row in rows.to_dict("records"):
        path = str(row.get("setting") or "").strip()
        if not path:
            continue
        choices = str(row.get("choices") or "").strip()
        if choices:
            space[path] = {"choices": [yaml.safe_load(c.strip()) for c in choices.split(",") if c.strip()]}
            continue
        spec: dict[str, Any] = {}
        for key in ("low", "high", "step"):
            value = row.get(key)
            if value is not None and not (isinstance(value, float) and pd.isna(value)):
                spec[key] = value
        if row.get("log") is True:
            spec["log"] = True
        space[path] = spec
    return space


def suggest_button(task: str) -> None:
    """Outside the form: fills the table with the guide's ranges (the user edits them before starting)."""
    if st.button("Suggest ranges (the tuning guide's)", key=f"suggest_{task}", help="batch_size 32-512, learning_rate 1e-3..1e-2 (log), epochs_warmup 1-2, patience 5-10, scheduler_patience 2-10, scheduler_factor 0.1-0.5, train_ratio 0.7-0.99 ..."):
        st.session_state[_table_key(task)] = _rows_from_space(api.suggest_ranges(api.default_config(task)))
        st.session_state[f"study_table_generation_{task}"] = st.session_state.get(f"study_table_generation_{task}", 0) + 1


def study_section(task: str) -> dict[str, Any]:
    """Inside the form: the search table and the options. Returns what the submit needs."""
    rows = _typed(st.session_state.get(_table_key(task), pd.DataFrame(columns=COLUMNS)))
    generation = st.session_state.get(f"study_table_generation_{task}", 0)
    with st.expander("Search settings automatically (a study)", expanded=not rows.empty):
        st.caption(
            "Each row marks a setting as *search*: a range `low`..`high` (tick `log` to sample on a log scale, or give "
            "a `step`), or a comma-separated list of `choices`. Every trial is an ordinary run of this form's config "
            "with the sampled values; the pruner stops unpromising trials early. Start it with **Start study** below."
        )
        edited = st.data_editor(
            rows, num_rows="dynamic", width="stretch", key=f"study_editor_{task}_{generation}",
            column_config={
                "setting": st.column_config.SelectboxColumn("setting", options=api.searchable_settings(task), required=True),
                "low": st.column_config.NumberColumn("low", format="%g"),
                "high": st.column_config.NumberColumn("high", format="%g"),
                "log": st.column_config.CheckboxColumn("log"),
                "step": st.column_config.NumberColumn("step", format="%g"),
                "choices": st.column_config.TextColumn("choices", help="comma separated, e.g. adam, sgd"),
            },
        )  # fmt: skip
        c = st.columns(4)
        objective = c[0].text_input("Objective (empty: the task's monitored metric)", key=f"study_objective_{task}")
        direction = c[1].selectbox("Direction", ["(the metric's own)", "maximize", "minimize"], key=f"study_direction_{task}")
        sampler = c[2].selectbox("Sampler", SAMPLERS, key=f"study_sampler_{task}")
        pruner = c[3].selectbox("Pruner", PRUNERS, key=f"study_pruner_{task}")
        c = st.columns(4)
        n_trials = c[0].number_input("Trials", min_value=1, value=20, step=1, key=f"study_trials_{task}")
        parallel = c[1].number_input("Trials at once", min_value=1, value=1, step=1, key=f"study_parallel_{task}")
        timeout = c[2].number_input("Time limit (minutes, 0 = none)", min_value=0.0, value=0.0, key=f"study_timeout_{task}")
        seed = c[3].number_input("Sampler seed (-1 = random)", value=-1, step=1, key=f"study_seed_{task}")
    return {
        "space": space_from_rows(edited),
        "options": {
            "objective": objective.strip() or None, "direction": None if direction.startswith("(") else direction, "sampler": sampler,
            "pruner": pruner, "n_trials": int(n_trials), "parallel": int(parallel), "timeout_s": timeout * 60 or None,
            "seed": None if seed < 0 else int(seed),
        },
    }  # fmt: skip


def start(task: str, cfg: Any, study: dict[str, Any], name: str) -> None:
    """Start the study, or keep its problems for the page to show (with the config's, all at once)."""
    try:
        options = api.StudyOptions.model_validate(study["options"])
        created = api.start_study(cfg, study["space"], options, name=name)
    except api.ConfigError as exc:
        st.session_state[f"study_errors_{task}"] = [str(e) for e in exc.errors]
        return
    except ValueError as exc:
        st.session_state[f"study_errors_{task}"] = [str(exc)]
        return
    st.session_state.pop(f"study_errors_{task}", None)
    st.switch_page("pages/study.py", query_params={"study": created.id})


def show_errors(task: str) -> None:
    errors = st.session_state.get(f"study_errors_{task}")
    if errors:
        st.error(f"{len(errors)} problem(s) in the study; nothing was started:\n\n" + "\n".join(f"- {e}" for e in errors))
