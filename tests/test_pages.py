"""Every page headless with Streamlit's AppTest, on a fresh store (backend real, runs real and tiny)."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.support.waiting import wait_status
from workbench import api

TIMEOUT = 60
APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def _button(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    return next(b for b in at.button if b.label == label)


def _finished_run() -> api.RunRead:
    cfg = api.validate_dict({"task": "linreg", "epochs": 3, "train_batch_size": 8, "learning_rate": 0.05})
    run = api.launch_run(cfg, name="page-test", tags=["t1"])
    return wait_status(run.id, ("completed", "failed"))


def test_new_run_form_reports_every_error_with_its_field(home):
    at = _app()
    at.selectbox(key="task_picker").set_value("linreg").run()
    gen = at.session_state["form_generation_linreg"]
    at.number_input(key=f"linreg:{gen}:epochs").set_value(0)
    at.text_input(key=f"linreg:{gen}:learning_rate").input("-1")
    _button(at, "Validate").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "`epochs`" in errors and "`learning_rate`" in errors
    assert "nothing was launched" in errors
    assert api.list_runs() == []


def test_new_run_form_launches_a_run(home):
    at = _app()
    at.selectbox(key="task_picker").set_value("linreg").run()
    gen = at.session_state["form_generation_linreg"]
    at.number_input(key=f"linreg:{gen}:epochs").set_value(2)
    at.text_input(key=f"run_name_linreg_{gen}").input("from-the-form")
    _button(at, "Launch").click().run()
    assert not at.exception, at.exception
    runs = api.list_runs()
    assert [r.name for r in runs] == ["from-the-form"]
    assert runs[0].config["epochs"] == 2
    assert at.session_state["selected_run"] == runs[0].id
    wait_status(runs[0].id, ("completed", "failed"))


def test_every_task_form_renders_and_validates_its_defaults(home):
    at = _app()
    for task in api.tasks():
        at.selectbox(key="task_picker").set_value(task).run()
        assert not at.exception, (task, at.exception)
        labels = [e.label for e in at.expander]
        if api.not_used_settings(task):  # shared settings the task ignores sit apart from the ones it uses
            assert f"Shared settings this task does not use ({len(api.not_used_settings(task))})" in labels, (task, labels)
        _button(at, "Validate").click().run()
        assert not at.exception, (task, at.exception)
        assert not at.error, (task, [e.value for e in at.error])
        assert any("valid" in s.value for s in at.success), task


def test_runs_page_lists_and_filters(home):
    run = _finished_run()
    at = _app("pages/runs.py")
    frame = at.dataframe[0].value
    assert run.id in frame["id"].tolist()
    assert frame.loc[frame.id == run.id, "status"].item() == "completed"
    at.text_input(key="runs_text").input("no-such-run").run()
    assert len(at.dataframe[0].value) == 0


def test_dashboard_shows_status_charts_log_and_events(home):
    from workbench.ui.live_data import plan_token

    run = _finished_run()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["selected_run"] = run.id
    at.run()
    at.switch_page("pages/dashboard.py").run()
    assert not at.exception, at.exception
    assert any("completed" in m.value for m in at.metric)
    (live,) = at.get("component_instance")  # the live view: charts, log tail and events (its routes: test_dashboard_charts)
    args = json.loads(live.proto.json_args)
    assert args["run"] == run.id and args["live"] is False  # an ended run: drawn once, no polling
    assert args["status"] is None  # Streamlit's metrics above draw an ended run's status line
    assert args["plan"] == plan_token(run, api.metric_summaries([run.id]))  # the token the poll compares with
    charts = {c["title"]: c for section in args["sections"] for c in section["charts"]}
    assert {"train/loss", "train/lr", "valid/loss"} <= set(charts)
    assert charts["train/loss"]["spec"]["data"] == {"name": "points"}
    assert args["results"] == []  # every key of this run has several points
    assert not at.code  # the config is highlighted only when its expander is opened (it cost the browser ~0.7 CPU s)
    at.session_state[f"config_{run.id}"] = True  # what opening it does
    at.run()
    assert not at.exception, at.exception
    assert "task: linreg" in at.code[0].value


def test_an_active_runs_status_line_is_the_live_views(home):
    """While a run is active the live view draws its status line from its poll (no Streamlit fragment redrawing the
    page), and holds the token of the chart plan the page drew, to ask for a rerun when it changes."""
    cfg = api.validate_dict({"task": "linreg", "epochs": 3, "steps_per_epoch": 200, "step_sleep_s": 0.05, "train_batch_size": 8})
    run = wait_status(api.launch_run(cfg, name="live-page").id, ("running",))
    try:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.session_state["selected_run"] = run.id
        at.run()
        at.switch_page("pages/dashboard.py").run()
        assert not at.exception, at.exception
        assert not at.metric  # no Streamlit status line while the run is active
        (live,) = at.get("component_instance")
        args = json.loads(live.proto.json_args)
        assert args["live"] is True and args["status"]["metrics"][0] == ["Status", "running"]
        assert len(args["plan"]) == 16 and isinstance(args["results"], list)
    finally:
        api.cancel_run(run.id)
        wait_status(run.id, ("cancelled", "completed"))


def test_one_value_metrics_are_a_table_in_the_live_view(home):
    from workbench.settings import get_settings
    from workbench.store import get_engine
    from workbench.store import metrics as metric_store

    run = _finished_run()
    metric_store.write_metrics(get_engine(get_settings().database_url), run_id=run.id, points=[("test/loss", 99, 0.123456789, 1.0)])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["selected_run"] = run.id
    at.run()
    at.switch_page("pages/dashboard.py").run()
    assert not at.exception, at.exception
    args = json.loads(at.get("component_instance")[0].proto.json_args)
    assert args["results"] == [["test/loss", "0.123457", 99]]
    assert "test/loss" not in {c["title"] for section in args["sections"] for c in section["charts"]}


def test_checkpoints_page_offers_a_download(home):
    run = _finished_run()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["selected_run"] = run.id
    at.run()
    at.switch_page("pages/checkpoints.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert "★" in table["best"].tolist()
    links = {b.proto.label: b.proto.url for b in at.get("link_button")}
    best = next(c for c in api.checkpoints(run.id) if c.is_best)
    assert links[f"Download {Path(best.path).name} ({best.size_bytes / 1e3:.1f} kB)"] == f"/files/runs/{run.id}/checkpoints/{best.id}"
    assert links["Download run bundle (zip)"] == f"/files/runs/{run.id}/bundle.zip"
    assert not at.get("download_button")  # nothing held in the server's memory


def test_fork_and_evaluate_link_to_the_new_run(home):
    run = _finished_run()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["selected_run"] = run.id
    at.run()
    at.switch_page("pages/checkpoints.py").run()
    ckpt = next(c for c in api.checkpoints(run.id) if c.is_best)
    next(b for b in at.button if b.label == f"Launch fork from checkpoint #{ckpt.id}").click().run()
    assert not at.exception, at.exception
    (child,) = api.forks_of(run.id)
    (link,) = at.get("page_link")
    assert link.proto.label == f"Open fork {child.id} on the Dashboard →"
    assert link.proto.page.endswith("dashboard") and f"run={child.id}" in link.proto.query_string
    _button(at, f"Evaluate checkpoint #{ckpt.id}").click().run()
    assert not at.exception, at.exception
    (job,) = api.evaluations_of(run.id)
    assert any(p.proto.label == f"Open evaluation {job.id} on the Dashboard →" for p in at.get("page_link"))
    for r in (child, job):
        wait_status(r.id, ("completed", "failed"))


def test_clone_fills_the_form(home):
    run = _finished_run()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["clone_request"] = run.id
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="task_picker").value == "linreg"
    assert any("clone of run" in c.value for c in at.caption)
