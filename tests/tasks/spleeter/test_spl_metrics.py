"""SDR and SI-SDR on signals whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.tasks.spleeter.metrics import sdr, si_sdr, song_scores, summarize


@pytest.fixture()
def signals():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((2, 8000))
    n = rng.standard_normal((2, 8000))
    n -= (n * s).sum(-1, keepdims=True) / (s * s).sum(-1, keepdims=True) * s  # make n orthogonal to s per channel
    return s, n


def test_sdr_known_ratio(signals):
    s, n = signals
    n = n * np.sqrt((s**2).sum() / (n**2).sum()) / 10  # noise power = signal power / 100 -> 20 dB
    assert sdr(s, s + n) == pytest.approx(20.0, abs=1e-6)
    assert sdr(s, np.zeros_like(s)) == pytest.approx(0.0, abs=1e-6)  # silence: error = reference
    assert sdr(s, s) > 100


def test_sdr_punishes_gain_si_sdr_does_not(signals):
    s, _ = signals
    assert sdr(s, 0.5 * s) == pytest.approx(10 * np.log10(1 / 0.25), abs=1e-6)  # 6.02 dB
    assert si_sdr(s, 0.5 * s) > 100


def test_si_sdr_known_ratio(signals):
    s, n = signals
    scale = np.sqrt((s**2).sum(-1, keepdims=True) / (n**2).sum(-1, keepdims=True))
    est = 3.0 * (s + n * scale / np.sqrt(10))  # per channel 10 dB, at any gain
    assert si_sdr(s, est, zero_mean=False) == pytest.approx(10.0, abs=1e-6)


def test_si_sdr_of_mixture_equals_snr_for_orthogonal_sources(signals):
    vocals, accomp = signals
    mix = vocals + accomp
    expected = np.mean(10 * np.log10((vocals**2).sum(-1) / (accomp**2).sum(-1)))
    assert si_sdr(vocals, mix, zero_mean=False) == pytest.approx(expected, abs=1e-6)


def test_summarize_medians_and_improvements():
    per_song = [
        {"si_sdr_vocals": 5.0, "si_sdr_vocals_mixture": 1.0, "sdr_vocals": 4.0, "sdr_vocals_mixture": 0.0},
        {"si_sdr_vocals": 7.0, "si_sdr_vocals_mixture": 0.0, "sdr_vocals": 6.0, "sdr_vocals_mixture": 1.0},
        {"si_sdr_vocals": 9.0, "si_sdr_vocals_mixture": 2.0, "sdr_vocals": 9.0, "sdr_vocals_mixture": 2.0},
    ]
    out = summarize(per_song, ["vocals"])
    assert out["valid/si_sdr_vocals"] == 7.0
    assert out["valid/si_sdri_vocals"] == 7.0  # median of the per-song gains (4, 7, 7), not 7 - 1
    assert out["valid/sdri_vocals"] == 5.0


def test_song_scores_keys():
    ref = np.ones((2, 2, 10))
    keys = song_scores(["vocals", "accompaniment"], ref, ref, "_irm").keys()
    assert set(keys) == {"sdr_vocals_irm", "si_sdr_vocals_irm", "sdr_accompaniment_irm", "si_sdr_accompaniment_irm"}
