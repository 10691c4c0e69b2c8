"""AppTest of the flows issue 9 names: single-pass form errors marked at their fields, tags, deep links, the runs
table's extra columns, and delete/cancel that ask first and leave nothing selected."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.support.waiting import wait_status
from workbench import api

TIMEOUT = 60
APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _app(page: str | None = None, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.query_params.update(query or {})
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _button(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    return next(b for b in at.button if b.label == label)


def _expander(at: AppTest, label_start: str):  # type: ignore[no-untyped-def]
    return next(e for e in at.expander if e.label.startswith(label_start))


def _finished_run(name: str = "flow", **settings: object) -> api.RunRead:
    cfg = api.validate_dict({"task": "linreg", "epochs": 2, "train_batch_size": 8, **settings})
    run = api.launch_run(cfg, name=name)
    return wait_status(run.id, ("completed", "failed"))


def test_form_reports_field_and_rule_errors_in_one_pass_at_their_fields(home):
    at = _app()
    at.selectbox(key="task_picker").set_value("recommendation").run()
    gen = at.session_state["form_generation_recommendation"]
    at.number_input(key=f"recommendation:{gen}:embedding_size").set_value(0)  # a field error
    at.text_input(key=f"recommendation:{gen}:valid_metric").input("nope@3")  # a cross-field rule
    _button(at, "Validate").click().run()
    assert not at.exception, at.exception
    summary = next(e.value for e in at.error if "nothing was launched" in e.value)
    assert "2 problem(s)" in summary and "`embedding_size`" in summary and "`valid_metric`" in summary
    # each is also shown on its own, next to its widget, not only in the list under the form
    marks = [e.value for e in at.error if "nothing was launched" not in e.value]
    assert any("greater than or equal to 1" in m for m in marks)
    assert any("'nope@3' is not among the reported metrics" in m for m in marks)
    assert api.list_runs() == []
    # fixed values: the marks go away with the next submit
    at.number_input(key=f"recommendation:{gen}:embedding_size").set_value(16)
    at.text_input(key=f"recommendation:{gen}:valid_metric").input("MRR@10")
    _button(at, "Validate").click().run()
    assert not at.error, [e.value for e in at.error]
    assert any("valid" in s.value for s in at.success)


def test_a_nested_error_opens_its_section_and_is_shown_there(home):
    at = _app()
    at.selectbox(key="task_picker").set_value("ctr_stream").run()
    gen = at.session_state["form_generation_ctr_stream"]
    section = _expander(at, "Embed SGD")
    assert not section.proto.expanded
    assert at.text_input(key=f"ctr_stream:{gen}:embed_sgd_param.learning_rate").label == "embed_sgd_param.learning_rate"
    at.text_input(key=f"ctr_stream:{gen}:embed_sgd_param.learning_rate").input("-1")
    at.text_input(key=f"ctr_stream:{gen}:start_day").input("2019-07-20")
    _button(at, "Validate").click().run()
    assert not at.exception, at.exception
    section = _expander(at, "Embed SGD")
    assert section.proto.expanded
    assert any("greater than 0" in e.value for e in section.error)
    assert any("YYYYMMDD" in e.value for e in _expander(at, "Data and passes").error)
    assert not _expander(at, "Embedx SGD").proto.expanded  # no error there: stays closed


def test_launch_trims_and_dedupes_tags_and_opens_the_run(home):
    at = _app()
    at.selectbox(key="task_picker").set_value("linreg").run()
    gen = at.session_state["form_generation_linreg"]
    at.text_input(key=f"run_tags_linreg_{gen}").input(" baseline, ,baseline ,lr-sweep")
    _button(at, "Launch").click().run()
    assert not at.exception, at.exception
    (run,) = api.list_runs()
    assert run.tags == ["baseline", "lr-sweep"]
    assert [r.id for r in api.list_runs(tag="baseline")] == [run.id]
    assert at.query_params.get("run") == run.id  # the dashboard opened on the new run, by URL
    assert at.selectbox(key="dashboard_run").value == run.id
    api.update_run_info(run.id, tags=" a,a , b")
    assert api.get_run(run.id).tags == ["a", "b"]
    wait_status(run.id, ("completed", "failed"))


def test_dashboard_url_selects_the_run_and_follows_the_choice(home):
    older, newer = _finished_run("older"), _finished_run("newer")
    at = _app("pages/dashboard.py", {"run": older.id})
    assert at.selectbox(key="dashboard_run").value == older.id  # not the newest
    at.selectbox(key="dashboard_run").set_value(newer.id).run()
    assert at.query_params.get("run") == newer.id  # the URL follows the choice
    at = _app("pages/checkpoints.py", {"run": "no-such-run"})
    assert any("There is no run `no-such-run`" in e.value for e in at.error)
    assert at.selectbox(key="checkpoints_run").value is None  # nothing selected, not silently the newest


def test_compare_url_opens_those_runs(home):
    a, b = _finished_run("a"), _finished_run("b")
    at = _app("pages/compare.py", {"runs": f"{a.id},{b.id},ghost"})
    assert at.multiselect(key="compare_pick").value == [a.id, b.id]
    assert any("`ghost`" in e.value for e in at.error)


def test_runs_table_shows_chosen_hyper_parameters_and_metrics(home):
    fast = _finished_run("fast", learning_rate=0.05)
    slow = _finished_run("slow", learning_rate=0.001)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["runs_config_columns"] = ["learning_rate", "train_neg_sample_args.sample_num"]
    at.session_state["runs_metric_columns"] = ["train/loss"]
    at.session_state["runs_metric_stat"] = "min"
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
    frame = at.dataframe[0].value.set_index("id")
    assert frame.loc[fast.id, "learning_rate"] == 0.05 and frame.loc[slow.id, "learning_rate"] == 0.001
    assert frame.loc[fast.id, "train_neg_sample_args.sample_num"] == 1
    summaries = api.metric_summaries([fast.id]).set_index("key")
    assert frame.loc[fast.id, "train/loss (min)"] == summaries.loc["train/loss", "min"]
    assert "train/loss" in at.multiselect(key="runs_metric_columns").options


def test_delete_leaves_nothing_selected_and_closes_its_confirmation(home):
    keep, doomed = _finished_run("keep"), _finished_run("doomed")
    at = _app("pages/runs.py")
    key = f"runs_table_{at.session_state['runs_table_generation']}"
    row = at.dataframe[0].value["id"].tolist().index(doomed.id)
    at.session_state[key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert any(doomed.id in m.value for m in at.markdown if m.value.startswith("**Selected:**"))
    _button(at, "Delete for good").click().run()
    assert not at.exception, at.exception
    assert [r.id for r in api.list_runs()] == [keep.id]
    assert not any(m.value.startswith("**Selected:**") for m in at.markdown)  # nothing selected now
    assert not any(b.label == "Delete for good" for b in at.button)  # and no confirmation left to click
    assert any("Deleted 1 run(s)" in s.value for s in at.success)


def test_cancel_asks_first(home):
    cfg = api.validate_dict({"task": "linreg", "epochs": 50, "step_sleep_s": 0.05})
    run = api.launch_run(cfg, name="long")
    wait_status(run.id, ("running",))
    at = _app("pages/runs.py")
    key = f"runs_table_{at.session_state['runs_table_generation']}"
    at.session_state[key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert api.get_run(run.id).status == "running"  # selecting and opening the pop-up cancels nothing
    _button(at, "Cancel the run(s)").click().run()
    assert not at.exception, at.exception
    assert wait_status(run.id, ("cancelled",)).status == "cancelled"


def test_empty_runs_page_offers_a_quick_run(home):
    at = _app("pages/runs.py")
    assert any("No runs yet" in i.value for i in at.info)
    assert any(b.label == "Launch a quick run" for b in at.button)


def test_an_imported_yaml_with_errors_is_loaded_and_marked_with_its_lines(home):
    at = _app()
    at.selectbox(key="task_picker").set_value("recommendation").run()
    text = b"task: recommendation\nembedding_size: 0\nvalid_metric: nope@3\n"
    at.get("file_uploader")[0].set_value(("bad.yaml", text, "text/yaml")).run()
    assert not at.exception, at.exception
    assert any("bad.yaml (has errors)" in c.value for c in at.caption)
    summary = next(e.value for e in at.error if "nothing was launched" in e.value)
    assert "`embedding_size` (line 2)" in summary and "`valid_metric` (line 3)" in summary
    assert any("'nope@3' is not among" in e.value and "line" not in e.value for e in at.error)  # the mark itself
