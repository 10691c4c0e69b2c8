"""The Dashboard's charts: specs that do not change while points arrive, the live view's JSON routes, pins per task.

The rules that work on the points themselves (what gets smoothed, the shared x range) run in the browser:
tests/test_live_view.py runs them in Chromium.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
from starlette.routing import Router

from tests.support.waiting import wait_status
from workbench import api
from workbench.ui.dashboard import matches
from workbench.ui.live_data import plan_signature
from workbench.ui.live_charts import ChartView, Shape, overlay_spec, series_spec
from workbench.ui import live_data
from workbench.ui.live_data import routes


def test_the_spec_stays_the_same_while_points_arrive():
    """The browser keeps its Vega view (and only inserts points) while the spec is unchanged: nothing in it depends
    on the points but the few things a Shape says, which change a few times in a run at most."""
    view = ChartView(smoothing=0.6)
    specs = {json.dumps(series_spec(Shape.of(n, 0.31 + 1 / n, 2.5), view), sort_keys=True) for n in range(61, 400, 7)}
    assert len(specs) == 1
    spec = json.loads(specs.pop())
    assert spec["data"] == {"name": "points"} and "datasets" not in spec  # the points travel beside the spec
    assert {p["name"] for p in spec["params"]} == {"x_lo", "x_hi", "smooth", "down"}


def test_shape_points_log_and_zero():
    assert Shape.of(60, 0.1, 0.5).points and not Shape.of(61, 0.1, 0.5).points  # a short series shows its points
    assert Shape.of(5, 1.0, 1.0 + 1e-9).constant and not Shape.of(5, 1.0, 1.1).constant
    log = ChartView(log_y=True)
    assert series_spec(Shape.of(9, -0.5, 3.0), log)["layer"][1]["encoding"]["y"]["scale"] == {"type": "symlog"}
    assert series_spec(Shape.of(9, 0.5, 3.0), log)["layer"][1]["encoding"]["y"]["scale"] == {"type": "log"}
    assert series_spec(Shape.of(9, 1.0, 1.0), ChartView())["layer"][1]["encoding"]["y"]["scale"] == {"zero": True}


def test_wall_axis_is_local_clock_time_and_overlays_name_their_series():
    spec = series_spec(Shape.of(9, 0.1, 0.5), ChartView(x="wall"))
    x = spec["encoding"]["x"]
    assert x["field"] == "wall" and x["type"] == "temporal" and x["axis"]["format"] == "%H:%M:%S"  # not "04:30" for 16:30
    over = overlay_spec(["valid/recall@20", "valid/mrr@20"], Shape.of(9, 0.1, 0.9), ChartView())
    assert over["encoding"]["color"]["scale"]["domain"] == ["valid/recall@20", "valid/mrr@20"]


def test_the_page_is_redrawn_only_when_its_chart_plan_changes():
    """The live view reruns the page when plan_signature changes: new keys, a one-value result getting a second
    point, a series passing the few-points mark; not for points that change nothing but the data."""
    import types

    import pandas as pd

    run = types.SimpleNamespace(id="r", config={})

    def sig(*rows: tuple) -> tuple:
        return plan_signature(run, pd.DataFrame(rows, columns=["key", "count", "min", "max"]))  # type: ignore[arg-type]

    base = sig(("train/loss", 10, 0.5, 2.0), ("valid/auc", 1, 0.7, 0.7))
    assert sig(("train/loss", 11, 0.4, 2.0), ("valid/auc", 1, 0.7, 0.7)) == base  # one more point: same plan
    assert sig(("train/loss", 10, 0.5, 2.0), ("valid/auc", 2, 0.7, 0.71)) != base  # a result becomes a chart
    assert sig(("train/loss", 61, 0.5, 2.0), ("valid/auc", 1, 0.7, 0.7)) != base  # no markers past 60 points
    assert sig(("train/loss", 10, 0.5, 2.0), ("valid/auc", 1, 0.7, 0.7), ("valid/mrr", 1, 0.3, 0.3)) != base  # a new key
    assert sig() != base


def test_search_matches_every_word():
    assert matches("valid/si_sdr_vocals", "valid sdr")
    assert matches("valid/si_sdr_vocals", "VOCALS")
    assert not matches("train/si_sdr_vocals", "valid sdr")


def test_pinned_charts_are_kept_per_task(home):
    assert api.pinned_metrics("recommendation") == []
    api.set_pinned_metrics("recommendation", ["valid/mrr@20", "train/loss", "train/loss"])
    api.set_pinned_metrics("ctr_stream", ["infer/auc"])
    assert api.pinned_metrics("recommendation") == ["valid/mrr@20", "train/loss"]
    assert api.pinned_metrics("ctr_stream") == ["infer/auc"]
    (home / "dashboard_prefs.json").write_text("{not json")  # a damaged file: nothing pinned, no error
    assert api.pinned_metrics("recommendation") == []


class _Answer:
    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status_code, self.text, self.headers = status, body.decode(), headers or {}

    def json(self):  # type: ignore[no-untyped-def]
        return json.loads(self.text)


def _get(path: str, params: list[tuple[str, str]] | None = None) -> _Answer:
    """The live view's routes called as the server calls them (an ASGI request), without starting a server."""
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "root_path": "", "headers": [],
             "query_string": urlencode(params or []).encode()}  # fmt: skip
    sent: list[dict] = []
    received: list[bool] = []

    async def receive() -> dict:
        if not received:
            received.append(True)
            return {"type": "http.request", "body": b""}
        while not (sent and sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body")):
            await asyncio.sleep(0.001)  # a streamed answer (a file) listens for the client leaving meanwhile
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(Router(routes=routes())(scope, receive, send))
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return _Answer(sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), headers)


@pytest.fixture()
def finished_run(home):
    cfg = api.validate_dict({"task": "linreg", "epochs": 3, "train_batch_size": 8, "learning_rate": 0.05, "print_freq": 1})
    run = api.launch_run(cfg, name="live-data")
    return wait_status(run.id, ("completed",))


def test_series_and_poll_routes_answer_what_the_view_lacks(finished_run):
    base = f"/live/runs/{finished_run.id}"
    series = _get(f"{base}/series.json", [("key", "train/loss"), ("key", "no/such")]).json()["series"]
    loss = series["train/loss"]
    assert loss["total"] == len(loss["rows"]) > 3 and not loss["down"] and series["no/such"]["rows"] == []
    steps = [r[0] for r in loss["rows"]]
    assert steps == sorted(steps) and all(len(r) == 5 for r in loss["rows"])  # step, value, min, max, wall

    first = _get(f"{base}/poll.json", [("key", "train/loss"), ("after", str(steps[1])), ("log", "-1"), ("events", "-1")]).json()
    assert [p[0] for p in first["points"]["train/loss"]] == steps[2:]  # only the points after the step it has
    assert first["status"] == "completed" and first["ended"] and first["more"] == []
    assert "completed" in first["log"]["text"] and first["events"]["rows"] and first["events"]["rows"][-1]["time"] > 1e12  # ms

    seen = [("key", "train/loss"), ("after", str(steps[-1])), ("log", str(first["log"]["size"])), ("events", str(first["events"]["last"]))]
    again = _get(f"{base}/poll.json", seen).json()
    assert again["points"] == {} and "log" not in again and "events" not in again  # nothing new: a small answer

    # the status line the view draws, and the token of the chart plan the page would draw now (a differing one
    # from the page's makes the view ask for a rerun)
    labels = [label for label, _ in again["run"]["metrics"]]
    assert labels == ["Status", "Duration", "Best valid/loss", "ETA"] and again["run"]["metrics"][0][1] == "completed"
    assert again["run"]["progress"]["fraction"] == 1.0 and again["run"]["started_ms"] > 1e12
    run = api.get_run(finished_run.id)
    assert again["plan"] == live_data.plan_token(run, api.metric_summaries([run.id]))


def test_poll_route_says_what_is_wrong(finished_run):
    missing = _get("/live/runs/no-such-run/poll.json")
    assert missing.status_code == 404 and "no-such-run" in missing.text
    bad = _get(f"/live/runs/{finished_run.id}/poll.json", [("key", "train/loss"), ("after", "x")])
    assert bad.status_code == 400 and "integers" in bad.text
    assert _get("/live/runs/no-such-run/series.json", [("key", "a")]).status_code == 404


def test_the_live_view_loads_vega_from_a_route_the_browser_caches():
    html = (Path(live_data.__file__).parent / "live" / "index.html").read_text()
    scripts = re.findall(r'<script src="(/live/static/[^"]+)"', html)
    assert len(scripts) == 2  # vega and vega-lite
    for path in scripts:
        answer = _get(path)
        assert answer.status_code == 200 and "immutable" in answer.headers["cache-control"]
        assert answer.text.startswith("!function") and len(answer.text) > 100_000
    assert _get("/live/static/..%2Fdashboard.py").status_code == 404
    assert _get("/live/static/index.html").status_code == 404
