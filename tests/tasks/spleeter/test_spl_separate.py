"""Separation: ratio masks, the ideal-mask bound, writing stems for the UI, spectrogram pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.tasks.spleeter.audio import read_wav, write_wav
from workbench.tasks.spleeter.config import SpleeterConfig
from workbench.tasks.spleeter.metrics import si_sdr
from workbench.tasks.spleeter.separate import (
    _masks_from_estimates,
    build_model,
    ideal_ratio_mask,
    separate,
    separate_file,
    spectrogram_image,
)


def cfg_small(**kw) -> SpleeterConfig:
    base = dict(sample_rate=8000, frame_length=256, frame_step=64, F=129, T=64, chunk_duration=3.0)
    return SpleeterConfig(**(base | kw))


def test_ratio_masks_sum_to_one_and_extend():
    est = torch.rand(2, 2, 10, 7)
    masks = _masks_from_estimates(est, 16, "zeros")
    assert masks.shape == (2, 2, 16, 7)
    torch.testing.assert_close(masks[:, :, :10].sum(0), torch.ones(2, 10, 7))
    assert float(masks[:, :, 10:].abs().max()) == 0.0
    avg = _masks_from_estimates(est, 16, "average")
    torch.testing.assert_close(avg[:, :, 12], avg[:, :, :10].mean(2))


def test_ideal_ratio_mask_separates_disjoint_tones():
    t = np.arange(16000) / 8000
    low = np.stack([np.sin(2 * np.pi * 300 * t)] * 2) * 0.4
    high = np.stack([np.sin(2 * np.pi * 1500 * t)] * 2) * 0.4
    sources = np.stack([low + high, low, high]).astype(np.float32)
    est = ideal_ratio_mask(sources, cfg_small())
    assert est.shape == (2, 2, 16000)
    assert si_sdr(low, est[0]) > 30 and si_sdr(high, est[1]) > 30


@torch.no_grad()
def test_separate_stems_add_up_to_mixture_when_f_is_all_bins():
    cfg = cfg_small()  # F = 129 = frame_length/2 + 1: no bins are zeroed by the mask extension
    model = build_model(cfg).eval()
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 5000)).astype(np.float32)
    stems, est = separate(model, audio, cfg)
    assert stems.shape == (2, 2, 5000) and est.shape[:3] == (2, 2, 129)
    np.testing.assert_allclose(stems.sum(0), audio, atol=1e-4)


def test_separate_file_writes_stems(tmp_path):
    cfg = cfg_small(F=64)
    model = build_model(cfg)
    state = {"model": model.state_dict()}
    audio = np.random.default_rng(1).uniform(-0.5, 0.5, (1, 16000)).astype(np.float32)  # mono, 16 kHz
    write_wav(tmp_path / "song.wav", audio, 16000)
    paths = separate_file(state, cfg.model_dump(mode="json"), tmp_path / "song.wav", tmp_path / "out")
    assert set(paths) == {"vocals", "accompaniment"}
    vocals, rate = read_wav(paths["vocals"])
    assert rate == 8000 and vocals.shape == (2, 8000)  # resampled to the model's rate, stereo


@pytest.mark.parametrize("source", ["array", "path"])
def test_spectrogram_image(tmp_path, source):
    audio = np.random.default_rng(2).standard_normal((2, 8000)).astype(np.float32) * 0.1
    if source == "path":
        write_wav(tmp_path / "a.wav", audio, 8000)
        img = spectrogram_image(tmp_path / "a.wav", frame_length=256, frame_step=64)
    else:
        img = spectrogram_image(audio, 8000, frame_length=256, frame_step=64, max_freq=2000)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[0] == (129 if source == "path" else 65) and img.shape[1] == 1 + (8000 - 256) // 64
