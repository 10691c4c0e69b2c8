"""Paddle's bucketed AUC and ctr_metric_bundle, against exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.tasks.ctr_stream.metrics import CtrMetrics, bucket_auc, bucket_error, exact_auc


def test_bucket_auc_matches_the_exact_auc_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(3):
        p = rng.random(50_000)
        y = (rng.random(p.size) < p**2).astype(np.float32)
        m = CtrMetrics()
        m.add(p, y)
        auc = m.compute("x")["x/auc"]
        assert auc == pytest.approx(exact_auc(p, y), abs=2e-4)
        assert 0.6 < auc < 0.9


def test_hand_computed_auc_and_ties_within_a_bucket():
    m = CtrMetrics()
    m.add(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]))
    assert m.compute("x")["x/auc"] == pytest.approx(0.75)  # 3 of the 4 positive-negative pairs ordered right
    tied = CtrMetrics()
    tied.add(np.array([0.5, 0.5001]), np.array([1, 0]))  # same bucket int(p * 4095): a tie counts half
    assert tied.compute("x")["x/auc"] == pytest.approx(0.5)
    assert exact_auc(np.array([0.5, 0.5001]), np.array([1, 0])) == 0.0


def test_auc_without_positives_or_negatives_is_one_half():
    assert bucket_auc(np.zeros(4096), np.ones(4096)) == 0.5
    assert exact_auc(np.array([0.1, 0.2]), np.array([0, 0])) == 0.5


def test_bundle_statistics():
    p = np.array([0.2, 0.6, 0.9, 0.1])
    y = np.array([0, 1, 1, 0])
    m = CtrMetrics()
    m.add(p[:2], y[:2])
    m.add(p[2:], y[2:])  # accumulates over batches
    out = m.compute("train")
    assert out["train/mae"] == pytest.approx(np.abs(p - y).mean())
    assert out["train/rmse"] == pytest.approx(math.sqrt(((p - y) ** 2).mean()))
    assert out["train/actual_ctr"] == pytest.approx(0.5)
    assert out["train/predicted_ctr"] == pytest.approx(p.mean())
    assert out["train/copc"] == pytest.approx(0.5 / p.mean())
    assert out["train/mean_q"] == pytest.approx((1 / (1 + np.exp(-p))).mean())  # Paddle's sigmoid-of-probability
    eps = 1e-4
    assert out["train/logloss"] == pytest.approx(-(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)).mean())
    assert out["train/examples"] == 4


def test_bucket_error_is_small_when_calibrated_and_large_when_not():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.02, 0.3, 400_000)
    y = (rng.random(p.size) < p).astype(np.float32)
    calibrated = CtrMetrics()
    calibrated.add(p, y)
    assert bucket_error(calibrated.stat_pos, calibrated.stat_neg) < 0.05
    doubled = CtrMetrics()
    doubled.add(np.minimum(p * 2, 1.0), y)  # predicts twice the true rate: actual / predicted - 1 = -0.5
    assert bucket_error(doubled.stat_pos, doubled.stat_neg) == pytest.approx(0.5, abs=0.05)


def test_state_round_trip_and_merge():
    rng = np.random.default_rng(2)
    a, b = CtrMetrics(), CtrMetrics()
    a.add(rng.random(100), rng.random(100) < 0.3)
    b.add(rng.random(100), rng.random(100) < 0.3)
    merged = CtrMetrics.from_state(a.state())
    merged.merge(b)
    assert merged.total == 200 and (merged.stat_pos == a.stat_pos + b.stat_pos).all()
