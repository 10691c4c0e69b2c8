"""The Dashboard's live charts: what gets smoothed, stable specs while points arrive, pins kept per task."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from workbench import api
from workbench.store.metrics import Series
from workbench.ui.dashboard import matches
from workbench.ui.live_charts import ChartView, chart_frame, nice_ceiling, series_spec, smoothable, x_domain


def _series(values: list[float], start_step: int = 1) -> Series:
    steps = np.arange(start_step, start_step + len(values))
    frame = pd.DataFrame({"step": steps, "value": values, "vmin": values, "vmax": values, "wall": 1.7e9 + steps})
    return Series(frame, len(values), False)


def test_smoothing_is_for_dense_training_series_only():
    rng = np.random.default_rng(0)
    noisy = 1 / np.arange(1, 201) + rng.normal(0, 0.05, 200)
    assert smoothable("train/loss", noisy)
    assert not smoothable("valid/si_sdr_vocals", noisy)  # an evaluation metric, however many points
    assert not smoothable("infer/auc", noisy)
    assert not smoothable("train/epoch", np.repeat(np.arange(6.0), 40))  # a counter: monotone
    assert not smoothable("train/lr", np.linspace(1e-3, 1e-5, 200))  # a schedule: monotone
    assert not smoothable("train/loss", noisy[:30])  # too few points to need it


def test_an_evaluation_metric_ends_at_its_real_value_even_with_smoothing():
    values = [1.0, 2.5, 4.0, 5.2, 6.35] * 20  # e.g. SI-SDR per evaluation, a hundred evaluations
    frame, smoothed = chart_frame(_series(values), "valid/si_sdr_vocals", ChartView(smoothing=0.9))
    assert not smoothed and "smoothed" not in frame and frame["value"].iloc[-1] == 6.35


def test_the_spec_stays_the_same_while_points_arrive():
    """The browser keeps its Vega view (and only updates the data) while the spec is unchanged."""
    view = ChartView(smoothing=0.6)
    rng = np.random.default_rng(1)
    values = list(1 / np.arange(1, 400) + rng.normal(0, 0.05, 399))
    specs = set()
    for n in (120, 121, 150, 180):
        series = _series(values[:n])
        frame, smoothed = chart_frame(series, "train/loss", view)
        summary = pd.DataFrame({"first_step": [1], "last_step": [n]})
        domain = x_domain(summary, view, None, None)
        spec = series_spec(frame, smoothed=smoothed, downsampled=False, view=view, domain=domain)
        assert "data" not in spec and "datasets" not in spec  # the data travels beside the spec
        specs.add(json.dumps(spec, sort_keys=True))
    assert len(specs) == 1


def test_one_x_range_for_every_chart_and_nice_bounds():
    assert [nice_ceiling(x) for x in (0.3, 1, 7, 101, 420, 5000)] == [0.5, 1, 10, 200, 500, 5000]
    summary = pd.DataFrame({"first_step": [1, 35, 70], "last_step": [420, 420, 385]})
    assert x_domain(summary, ChartView(x="step"), None, None) == (0.0, 500)
    lo, hi = x_domain(summary, ChartView(x="wall"), started_at=1000.0, last_wall=1040.0)
    assert (lo, hi) == (1_000_000.0, 1_050_000.0)  # epoch ms, the viewer's browser shows local clock time


def test_log_scale_is_symlog_when_a_series_is_not_positive():
    frame, _ = chart_frame(_series([3.0, 1.0, -0.5]), "train/loss", ChartView())
    spec = series_spec(frame, smoothed=False, downsampled=False, view=ChartView(log_y=True), domain=None)
    assert spec["layer"][0]["encoding"]["y"]["scale"] == {"type": "symlog"}
    frame, _ = chart_frame(_series([3.0, 1.0, 0.5]), "train/loss", ChartView())
    spec = series_spec(frame, smoothed=False, downsampled=False, view=ChartView(log_y=True), domain=None)
    assert spec["layer"][0]["encoding"]["y"]["scale"] == {"type": "log"}


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
