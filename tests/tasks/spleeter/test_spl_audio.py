"""WAV reading/writing (PCM 8/16/24/32, float), resampling, STFT/iSTFT round trip."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

from workbench.tasks.spleeter.audio import AudioError, istft, magnitude, read_wav, resample, stft, wav_info, write_wav


def _stdlib_wav(path, data: np.ndarray, width: int, rate: int = 8000) -> None:
    """Write PCM with the stdlib `wave` module (an independent writer) from int samples [N, C]."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 3:
            raw = data.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
        elif width == 1:
            raw = (data + 128).astype(np.uint8).tobytes()
        else:
            raw = data.astype(f"<i{width}").tobytes()
        w.writeframes(raw)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_reads_pcm_written_by_stdlib(tmp_path, width):
    full = 2 ** (8 * width - 1)
    rng = np.random.default_rng(width)
    ints = rng.integers(-full, full, size=(300, 2))
    _stdlib_wav(tmp_path / "a.wav", ints, width)
    audio, rate = read_wav(tmp_path / "a.wav", start=10, frames=100)
    assert rate == 8000 and audio.shape == (2, 100) and audio.dtype == np.float32
    np.testing.assert_allclose(audio, ints[10:110].T / full, atol=1e-6)


def test_float_and_int16_round_trip(tmp_path):
    x = np.random.default_rng(0).uniform(-0.9, 0.9, (2, 1000)).astype(np.float32)
    write_wav(tmp_path / "f.wav", x, 22050)
    y, rate = read_wav(tmp_path / "f.wav")
    assert rate == 22050 and np.array_equal(x, y)
    write_wav(tmp_path / "i.wav", x, 22050, subtype="int16")
    z, _ = read_wav(tmp_path / "i.wav")
    np.testing.assert_allclose(z, x, atol=1 / 32767)
    info = wav_info(tmp_path / "i.wav")
    assert (info.channels, info.frames, info.sample_width, info.is_float) == (2, 1000, 2, False)


def test_bad_files_say_what_is_wrong(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        wav_info(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"ID3 this is an mp3, not a wav" * 4)
    with pytest.raises(AudioError, match="not a WAV"):
        wav_info(tmp_path / "junk.wav")
    write_wav(tmp_path / "cut.wav", np.zeros((1, 100), np.float32), 8000)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "cut.wav").read_bytes()[:30])  # header cut short
    with pytest.raises(AudioError, match="cut.wav"):
        wav_info(tmp_path / "cut.wav")


def test_resample_keeps_a_sine_frequency():
    t = np.arange(44100) / 44100
    x = np.sin(2 * np.pi * 440 * t)[None].astype(np.float32)
    y = resample(x, 44100, 16000)
    assert y.shape == (1, 16000)
    expected = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    np.testing.assert_allclose(y[0, 100:-100], expected[100:-100], atol=2e-3)


def test_stft_istft_round_trip():
    x = torch.randn(2, 5000)
    L, H = 512, 128
    padded = torch.nn.functional.pad(x, (L, L))  # as separation pads: every real sample is fully overlapped
    spec = stft(padded, L, H)
    assert spec.shape == (2, L // 2 + 1, 1 + (padded.shape[-1] - L) // H)
    back = istft(spec, L, H, padded.shape[-1])[..., L : L + 5000]
    torch.testing.assert_close(back, x, atol=1e-4, rtol=0)


def test_magnitude_is_first_bins_and_crop_equals_segment():
    x = torch.randn(1, 4000)
    L, H, F = 256, 64, 40
    full = magnitude(x, L, H, F)
    assert full.shape[-2] == F
    # center=False: frames r..r+T-1 are exactly the STFT of samples [r*H, (r+T-1)*H + L) (what train mode reads)
    r, T = 7, 20
    seg = magnitude(x[:, r * H : (r + T - 1) * H + L], L, H, F)
    torch.testing.assert_close(seg, full[..., r : r + T], atol=1e-4, rtol=1e-4)
