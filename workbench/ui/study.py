"""Study page pieces: the study picker, status line, the live charts and the trials table, promote actions."""

from __future__ import annotations

import streamlit as st

from workbench import api
from workbench.ui import study_charts
from workbench.ui.common import fmt_time
from workbench.ui.newrun import CLONE_REQUEST

REFRESH_S = 3.0  # a study changes at trial ends and validations: every few seconds is live enough, and cheap
STUDY_PARAM = "study"  # ?study=ID opens that study


def pick_study() -> api.StudyRead | None:
    studies = api.list_studies()
    if not studies:
        st.info("No studies yet. Start one from a terminal with `workbench study run CONFIG.yaml --space SPACE.yaml`, "
                "or on the **New run** page (search mode).")  # fmt: skip
        return None
    ids = [s.id for s in studies]
    wanted = st.query_params.get(STUDY_PARAM)
    if wanted and wanted not in ids:
        st.error(f"No study {wanted!r} in this workbench.")
        return None
    by_id = {s.id: s for s in studies}
    chosen = st.selectbox(
        "Study", ids, index=ids.index(wanted) if wanted else 0, key="study_pick",
        format_func=lambda i: f"{i} · {by_id[i].name} · {by_id[i].task} · {by_id[i].trials} trials · best {_best(by_id[i])}",
    )  # fmt: skip
    st.query_params[STUDY_PARAM] = chosen
    return by_id[chosen]


def _best(study: api.StudyRead) -> str:
    return "-" if study.best_value is None else f"{study.objective} {study.best_value:.4f}"


def study_status(study: api.StudyRead, rep: api.StudyReport) -> None:
    options = api.StudyOptions.model_validate(study.options)
    finished = int(rep.trials["state"].isin(["complete", "pruned", "fail"]).sum()) if len(rep.trials) else 0
    cols = st.columns(4)
    status = str(study.status)
    if status == "running" and not api.driver_running(study):
        status = "running (driver stopped)"
    cols[0].metric("Status", status)
    cols[1].metric("Trials finished", f"{finished} / {options.n_trials}")
    cols[2].metric(f"Best {study.objective}", "-" if rep.best is None else f"{rep.best['value']:.4f}")
    cols[3].metric("Best trial", "-" if rep.best is None else str(rep.best["number"]))
    st.caption(
        f"{options.sampler} sampler · {options.pruner} pruner · {options.parallel} at once · {study.direction} · "
        f"created {fmt_time(study.created_at)}" + (f" · error: {study.error}" if study.error else "")
    )
    if status == "running (driver stopped)":
        st.warning(f"The study's driver process is gone. Resume it to carry on: `workbench study resume {study.id}` or the button below.")


def charts(study: api.StudyRead, rep: api.StudyReport) -> None:
    if rep.trials.empty:
        st.info("No trials yet: the first ones start within a few seconds.")
        return
    left, right = st.columns(2)
    left.altair_chart(study_charts.history_chart(rep.trials, rep.history, study.objective), width="stretch")
    if not rep.steps.empty:
        right.altair_chart(study_charts.intermediate_chart(rep.steps, study.objective), width="stretch")
    parallel = study_charts.parallel_chart(rep.trials, study.objective)
    importance = study_charts.importance_chart(rep.importances)
    left, right = st.columns(2)
    if parallel is not None:
        left.altair_chart(parallel, width="stretch")
    if importance is not None:
        right.altair_chart(importance, width="stretch")
    slices = study_charts.slice_charts(rep.trials, study.objective)
    for i in range(0, len(slices), 3):
        cols = st.columns(3)
        for col, chart in zip(cols, slices[i : i + 3]):
            col.altair_chart(chart, width="stretch")


def trials_table(rep: api.StudyReport) -> None:
    frame = rep.trials.copy()
    frame["error"] = frame["error"].fillna("")
    frame["dashboard"] = frame["run_id"].map(lambda r: f"/dashboard?run={r}" if isinstance(r, str) else None)
    st.dataframe(
        frame.sort_values("number"),
        hide_index=True,
        width="stretch",
        column_config={
            "value": st.column_config.NumberColumn("value", format="%.4f"),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f"),
            "dashboard": st.column_config.LinkColumn("dashboard", display_text="open"),
        },
    )


def actions(study: api.StudyRead, rep: api.StudyReport) -> None:
    cols = st.columns(4)
    if str(study.status) == "running" and cols[0].button("Cancel study"):
        st.toast(f"{study.id}: {api.cancel_study(study.id)}")
    if str(study.status) in ("running", "failed") and not api.driver_running(study) and cols[1].button("Resume study"):
        api.resume_study(study.id)
        st.rerun()
    numbers = rep.trials.loc[rep.trials["state"] == "complete", "number"].tolist()
    if not numbers:
        return
    best = rep.best["number"] if rep.best else numbers[0]
    with cols[2].popover("Promote a trial"):
        trial = st.selectbox("Trial", numbers, index=numbers.index(best), key="promote_trial")
        epochs = st.number_input("Epochs (empty: as trained)", min_value=1, value=None, step=1, key="promote_epochs")
        if st.button("Launch it as a new run", key="promote_launch"):
            run = api.promote(study.id, int(trial), epochs=int(epochs) if epochs else None)
            st.success(f"Launched run {run.id}.")
            st.page_link("pages/dashboard.py", label=f"Open {run.id} on the Dashboard", query_params={"run": run.id})
        if st.button("Open its config in the New run form", key="promote_form"):
            run_id = rep.trials.loc[rep.trials["number"] == trial, "run_id"].iloc[0]
            st.session_state[CLONE_REQUEST] = run_id  # the form loads that trial run's config, as a clone does
            st.switch_page("pages/new_run.py")
        if st.button("Fork from its best checkpoint", key="promote_fork"):
            run = api.fork_best(study.id, int(trial))
            st.success(f"Launched fork {run.id}.")
            st.page_link("pages/dashboard.py", label=f"Open {run.id} on the Dashboard", query_params={"run": run.id})


def live(study: api.StudyRead) -> None:
    running = str(study.status) == "running"

    @st.fragment(run_every=REFRESH_S if running else None)
    def panel() -> None:
        current = api.get_study(study.id)
        rep = api.study_report(current.id)
        study_status(current, rep)
        charts(current, rep)
        st.subheader("Trials")
        trials_table(rep)
        if running and str(current.status) != "running":
            st.rerun()  # the study ended: redraw once without the timer

    panel()
