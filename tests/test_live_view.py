"""The live view's rules on the points (workbench/ui/live/logic.js) and its Vega-Lite specs, run in Chromium.

What gets smoothed, the debiased EMA, the shared x range and how points are appended are JavaScript, since the
browser keeps the points; these tests load the same files the Dashboard loads into a blank page and check them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from workbench.ui.charts import smooth_ema
from workbench.ui.live_charts import ChartView, Shape, overlay_spec, series_spec

pytestmark = pytest.mark.browser

LIVE = Path(__file__).resolve().parents[1] / "workbench" / "ui" / "live"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (the README's test command does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.set_content('<div id="c" style="width: 480px"></div>')
        for name in ("vendor/vega-5.33.1.min.js", "vendor/vega-lite-5.23.0.min.js", "logic.js"):
            page.add_script_tag(path=str(LIVE / name))
        yield page
        browser.close()


def _smoothable(page, key: str, values) -> bool:  # type: ignore[no-untyped-def]
    rows = [[i + 1, float(v), None, None, 1.7e9 + i] for i, v in enumerate(values)]
    return page.evaluate("([key, rows]) => { const s = new Series(key, 0.6, 60); s.reset(rows, rows.length, false); return s.smoothable; }", [key, rows])


def test_smoothing_is_for_dense_training_series_only(page):
    rng = np.random.default_rng(0)
    noisy = 1 / np.arange(1, 201) + rng.normal(0, 0.05, 200)
    assert _smoothable(page, "train/loss", noisy)
    assert not _smoothable(page, "valid/si_sdr_vocals", noisy)  # an evaluation metric, however many points
    assert not _smoothable(page, "infer/auc", noisy)
    assert not _smoothable(page, "train/epoch", np.repeat(np.arange(6.0), 40))  # a counter: monotone
    assert not _smoothable(page, "train/lr", np.linspace(1e-3, 1e-5, 200))  # a schedule: monotone
    assert not _smoothable(page, "train/loss", noisy[:30])  # too few points to need it


def test_the_ema_is_debiased_and_incremental(page):
    rng = np.random.default_rng(2)
    values = list(2 + rng.normal(0, 1, 150))
    values[40] = math.nan  # a non-finite point passes through and does not move the average
    rows = [[i, None if math.isnan(v) else v, None, None, 1.7e9 + i] for i, v in enumerate(values)]
    got = page.evaluate(
        """(rows) => { const s = new Series("train/loss", 0.9, 60); s.reset(rows.slice(0, 70), 70, false);
                       s.append(rows.slice(60), true);  // overlaps the first load: no duplicates
                       return [s.rows.map(r => r.smoothed), s.rows.length, s.total, s.caption]; }""",
        rows,
    )
    smoothed, n, total, caption = got
    expected = smooth_ema(np.array(values), 0.9)  # the Compare page's EMA, TensorBoard's rule
    assert n == 150 and total == 150 and caption == "150 of 150 points"
    assert smoothed[40] is None and np.allclose([x for i, x in enumerate(smoothed) if i != 40], np.delete(expected, 40))
    assert smoothed[0] == pytest.approx(values[0])  # not pulled towards zero


def test_one_x_range_for_every_chart_and_nice_bounds(page):
    assert page.evaluate("() => [0.3, 1, 7, 101, 420, 5000].map(niceCeiling)") == [0.5, 1, 10, 200, 500, 5000]
    domain = page.evaluate(
        """() => { const mk = (first, last) => { const s = new Series("k", 0, 60);
                     s.reset([[first, 1, null, null, 1000 + first / 10], [last, 2, null, null, 1000 + last / 10]], 2, false); return s; };
                   const list = [mk(1, 420), mk(35, 420), mk(70, 385)];
                   return [xDomain(list, "step", null), xDomain(list, "wall", 1000 * 1000)]; }"""
    )
    assert domain[0] == [0, 500]
    assert domain[1] == [1_000_000, 1_050_000]  # epoch ms from the run's start; the browser draws local clock time


def test_specs_compile_and_follow_inserted_points(page):
    """Both keys of an overlay inserted in one changeset are drawn (a second change before the view runs would
    replace the first), the y range follows new points, and the x range is the parameter the view sets."""
    over = overlay_spec(["valid/recall@20", "valid/mrr@20"], Shape.of(5, 0.2, 0.9), ChartView())
    single = series_spec(Shape.of(500, 0.1, 6.0), ChartView(x="wall", log_y=True))
    result = page.evaluate(
        """async ([over, single]) => {
             const make = (spec) => new vega.View(vega.parse(vegaLite.compile(spec).spec), {renderer: "canvas", container: document.getElementById("c")});
             const view = make(over);
             const row = (series, step, value) => ({series, step, value, smoothed: value, vmin: value, vmax: value, wall: step * 1000});
             view.change("points", vega.changeset().insert([row("valid/recall@20", 1, 0.5), row("valid/mrr@20", 1, 0.2)]));
             view.signal("x_lo", 0).signal("x_hi", 50);
             await view.runAsync();
             view.insert("points", [row("valid/recall@20", 2, 0.93), row("valid/mrr@20", 2, 0.3)]);
             await view.runAsync();
             const other = make(single);
             other.insert("points", [row("train/loss", 1, 5.0), row("train/loss", 2, 0.2)]).signal("smooth", true);
             await other.runAsync();
             return [view.scale("y").domain(), view.scale("x").domain(), view.data("points").length, other.scale("y").type];
           }""",
        [over, single],
    )
    y, x, n, log_type = result
    assert y[0] <= 0.2 and y[1] >= 0.93 and x == [0, 50] and n == 4 and log_type == "log"
    assert json.dumps(over) == json.dumps(overlay_spec(["valid/recall@20", "valid/mrr@20"], Shape.of(5, 0.2, 0.9), ChartView()))


def test_a_changed_plan_reruns_the_page_at_once_only_while_no_chart_is_drawn(page):
    due = "(a) => replanDue(...a)"
    assert page.evaluate(due, ["b", "a", False, 0])  # the first charts: at once
    assert not page.evaluate(due, ["b", "a", True, 4999])  # charts drawn: not within 5 s of the last draw
    assert page.evaluate(due, ["b", "a", True, 5000])
    assert not page.evaluate(due, ["a", "a", False, 60_000])  # the same plan: never
