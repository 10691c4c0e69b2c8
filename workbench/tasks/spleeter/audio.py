"""WAV reading and writing, resampling and the STFT, with numpy and torch only.

- WAV: a small RIFF reader instead of the stdlib `wave` module, because `wave` cannot read IEEE-float WAVs (the
  format most separation data sets and tools write) nor WAVE_FORMAT_EXTENSIBLE headers. Reads can start at any
  frame and stop after N frames without loading the whole file (training reads 20 s out of 4-minute songs).
- Resampling: FFT (band-limited) resampling of the excerpt that was read; exact for the band both rates share.
- STFT: Spleeter's: periodic Hann window, `center=False`, magnitudes of the first F bins. The inverse is an
  overlap-add divided by the summed squared window, which inverts exactly wherever frames fully overlap
  (Spleeter multiplies by a constant 2/3 instead, which is only right for hop = frame/4).
Audio arrays are float32 [C, N] (channels first) throughout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_IEEE_FLOAT = 3
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and what is wrong."""


@dataclass(frozen=True)
class WavInfo:
    path: Path
    sample_rate: int
    channels: int
    frames: int
    sample_width: int  # bytes per sample
    is_float: bool
    data_offset: int  # byte offset of the first sample in the file

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def wav_info(path: str | Path) -> WavInfo:
    """Parse a WAV header (RIFF chunks `fmt ` and `data`); raises AudioError for anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise AudioError(f"{path}: not a WAV file (no RIFF/WAVE header); convert it to WAV first")
        fmt: tuple[int, int, int, int] | None = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise AudioError(f"{path}: no audio data chunk (truncated or corrupt WAV)")
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                body = f.read(size + (size & 1))
                if len(body) < 16:
                    raise AudioError(f"{path}: truncated format chunk")
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
                fmt = (tag, channels, rate, bits)
            elif cid == b"data":
                if fmt is None:
                    raise AudioError(f"{path}: data chunk before the format chunk (corrupt WAV)")
                tag, channels, rate, bits = fmt
                if tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT) or bits not in (8, 16, 24, 32, 64):
                    raise AudioError(f"{path}: unsupported WAV encoding (format tag {tag}, {bits} bits)")
                if channels < 1 or rate < 1:
                    raise AudioError(f"{path}: invalid header ({channels} channels, {rate} Hz)")
                width = bits // 8
                available = path.stat().st_size - f.tell()
                frames = min(size, available) // (width * channels)
                return WavInfo(path, rate, channels, frames, width, tag == WAVE_FORMAT_IEEE_FLOAT, f.tell())
            else:
                f.seek(size + (size & 1), 1)


def read_wav(path: str | Path, start: int = 0, frames: int | None = None) -> tuple[np.ndarray, int]:
    """Read `frames` frames from frame `start` (all by default): float32 [C, N] in [-1, 1], and the sample rate.

    Reading past the end returns fewer frames; callers that need an exact length pad themselves.
    """
    info = wav_info(path)
    start = max(0, min(start, info.frames))
    count = info.frames - start if frames is None else max(0, min(frames, info.frames - start))
    w, c = info.sample_width, info.channels
    with open(info.path, "rb") as f:
        f.seek(info.data_offset + start * w * c)
        raw = f.read(count * w * c)
    count = len(raw) // (w * c)
    raw = raw[: count * w * c]
    if info.is_float:
        data = np.frombuffer(raw, dtype="<f4" if w == 4 else "<f8").astype(np.float32)
    elif w == 1:  # 8-bit WAV is unsigned
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif w == 3:  # 24-bit: widen to int32 by putting the 3 bytes in the top of each word
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        words = np.zeros((b.shape[0], 4), dtype=np.uint8)
        words[:, 1:] = b
        data = words.view("<i4").reshape(-1).astype(np.float32) / 2.0**31
    else:
        data = np.frombuffer(raw, dtype=f"<i{w}").astype(np.float32) / float(2 ** (8 * w - 1))
    return data.reshape(count, c).T.copy(), info.sample_rate


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int, *, subtype: str = "float32") -> Path:
    """Write audio [C, N] as 32-bit float (default) or 16-bit PCM WAV; returns the path.

    An int16 array is written as 16-bit PCM unchanged (generated songs keep mixture = sum of stems exactly).
    """
    path = Path(path)
    audio = np.atleast_2d(np.asarray(audio))
    channels, n = audio.shape
    if audio.dtype == np.int16:
        tag, width, payload = WAVE_FORMAT_PCM, 2, audio.T.astype("<i2").tobytes()
    elif subtype == "float32":
        tag, width, payload = WAVE_FORMAT_IEEE_FLOAT, 4, audio.T.astype("<f4").tobytes()
    elif subtype == "int16":
        q = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")  # the reader divides by 32768
        tag, width, payload = WAVE_FORMAT_PCM, 2, q.T.tobytes()
    else:
        raise ValueError(f"subtype must be float32 or int16, not {subtype!r}")
    fmt = struct.pack("<HHIIHH", tag, channels, sample_rate, sample_rate * channels * width, channels * width, 8 * width)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(payload)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        f.write(b"data" + struct.pack("<I", len(payload)) + payload)
    return path


def to_stereo(audio: np.ndarray) -> np.ndarray:
    """[C, N] -> [2, N]: mono is duplicated, channels beyond two are dropped (as the Spleeter port does)."""
    if audio.shape[0] == 1:
        return np.repeat(audio, 2, axis=0)
    return audio[:2]


def resample(audio: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """FFT resampling of [C, N] to round(N * new/orig) samples (ideal low-pass at the lower Nyquist)."""
    if orig_rate == new_rate or audio.shape[-1] == 0:
        return audio
    n_in = audio.shape[-1]
    n_out = max(1, round(n_in * new_rate / orig_rate))
    spec = np.fft.rfft(audio, axis=-1)
    keep = min(spec.shape[-1], n_out // 2 + 1)
    out_spec = np.zeros(audio.shape[:-1] + (n_out // 2 + 1,), dtype=spec.dtype)
    out_spec[..., :keep] = spec[..., :keep]
    return (np.fft.irfft(out_spec, n=n_out, axis=-1) * (n_out / n_in)).astype(np.float32)


# -- STFT -------------------------------------------------------------------------------------------------------


def hann(frame_length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.hann_window(frame_length, periodic=True, device=device)


def stft(audio: torch.Tensor, frame_length: int, frame_step: int) -> torch.Tensor:
    """Complex STFT, center=False: [..., N] -> [..., frame_length//2+1, frames] with frames = 1+(N-L)//step."""
    lead = audio.shape[:-1]
    flat = audio.reshape(-1, audio.shape[-1])
    spec = torch.stft(
        flat,
        n_fft=frame_length,
        hop_length=frame_step,
        window=hann(frame_length, audio.device),
        center=False,
        return_complex=True,
    )
    return spec.reshape(*lead, *spec.shape[-2:])


def magnitude(audio: torch.Tensor, frame_length: int, frame_step: int, n_bins: int) -> torch.Tensor:
    """Spleeter's network input: |STFT| of the first `n_bins` bins, [..., N] -> [..., F, frames]."""
    return stft(audio, frame_length, frame_step)[..., :n_bins, :].abs()


def istft(spec: torch.Tensor, frame_length: int, frame_step: int, length: int) -> torch.Tensor:
    """Inverse of `stft`: [..., frame_length//2+1, frames] -> [..., length] by windowed overlap-add.

    torch.istft refuses center=False with a Hann window (the envelope is 0 at the first sample), so the overlap-add
    is written out: samples the window never covers come back as 0 rather than as a division by ~0.
    """
    lead = spec.shape[:-2]
    frames = spec.shape[-1]
    window = hann(frame_length, spec.device)
    chunks = torch.fft.irfft(spec.reshape(-1, *spec.shape[-2:]), n=frame_length, dim=-2)  # [B, L, frames]
    chunks = chunks * window[None, :, None]
    total = frame_length + frame_step * (frames - 1)
    fold = dict(output_size=(1, total), kernel_size=(1, frame_length), stride=(1, frame_step))
    signal = torch.nn.functional.fold(chunks, **fold)  # [B, 1, 1, total]
    envelope = torch.nn.functional.fold((window**2)[None, :, None].expand(1, -1, frames), **fold)
    envelope = envelope.reshape(total)
    out = signal.reshape(-1, total) / torch.where(envelope > 1e-8, envelope, torch.ones_like(envelope))
    out = torch.nn.functional.pad(out, (0, max(0, length - total)))[..., :length]
    return out.reshape(*lead, length)
