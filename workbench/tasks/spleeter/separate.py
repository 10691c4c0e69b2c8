"""Separating whole songs with a trained checkpoint (Spleeter's inference path) and pictures for the UI.

Steps, as in deezer/spleeter `separator.py` / `model/__init__.py`:
1. Pad the waveform with one frame of zeros in front (so the first samples get full overlap-add) and at the end.
2. STFT, magnitudes of the first F bins, zero-padded to a multiple of T frames and cut into T-frame blocks.
3. Each stem's U-Net gives mask x mixture; ratio masks with exponent 2:
   m_i = (y_i^2 + eps/S) / (sum_j y_j^2 + eps), so the stems add back up to the mixture.
4. Bins above F get mask 0 (Spleeter's default "zeros" extension) or the frame's mean mask ("average").
5. Complex mixture STFT x mask, inverse STFT, cut the padding off.
The ideal-ratio-mask upper bound runs the same steps 3-5 with the true stems' magnitudes in place of the network's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.tasks.spleeter.audio import istft, read_wav, resample, stft, to_stereo, write_wav
from workbench.tasks.spleeter.config import SpleeterConfig
from workbench.tasks.spleeter.model import Separator

MASK_EPS = 1e-10  # Spleeter's EPSILON in the ratio mask
BLOCKS_PER_FORWARD = 4  # T-frame blocks per network call: bounds memory on long songs


def build_model(cfg: SpleeterConfig) -> Separator:
    return Separator(list(cfg.stem_names), 2, cfg.conv_activation, cfg.deconv_activation, cfg.batch_norm_momentum)


def load_separator(state: Mapping[str, Any], cfg: SpleeterConfig, device: torch.device | str = "cpu") -> Separator:
    """A Separator in eval mode with a checkpoint's weights (`state["model"]`)."""
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def _masks_from_estimates(estimates: torch.Tensor, n_bins: int, extension: str) -> torch.Tensor:
    """Ratio masks (exponent 2) [S, C, F, frames] extended to all STFT bins -> [S, C, n_bins, frames]."""
    power = estimates.float() ** 2
    masks = (power + MASK_EPS / power.shape[0]) / (power.sum(0, keepdim=True) + MASK_EPS)
    extra = n_bins - masks.shape[-2]
    if extra > 0:
        if extension == "average":
            fill = masks.mean(dim=-2, keepdim=True).expand(*masks.shape[:-2], extra, masks.shape[-1])
        else:
            fill = masks.new_zeros(*masks.shape[:-2], extra, masks.shape[-1])
        masks = torch.cat([masks, fill], dim=-2)
    return masks


def _padded_stft(audio: torch.Tensor, cfg: SpleeterConfig) -> torch.Tensor:
    """[C, N] -> complex [C, bins, frames] of the waveform padded with frame_length zeros at both ends."""
    padded = torch.nn.functional.pad(audio, (cfg.frame_length, cfg.frame_length))
    return stft(padded, cfg.frame_length, cfg.frame_step)


def _masked_waveforms(spec: torch.Tensor, masks: torch.Tensor, cfg: SpleeterConfig, n: int) -> torch.Tensor:
    """Apply masks [S, C, bins, frames] to the mixture STFT [C, bins, frames] -> waveforms [S, C, n]."""
    total = n + 2 * cfg.frame_length
    waves = istft(masks * spec.unsqueeze(0), cfg.frame_length, cfg.frame_step, total)
    return waves[..., cfg.frame_length : cfg.frame_length + n]


@torch.no_grad()
def estimate_magnitudes(model: Separator, mix_mag: torch.Tensor, T: int) -> torch.Tensor:
    """Network estimates for a whole song: mixture magnitudes [C, F, frames] -> [S, C, F, frames]."""
    frames = mix_mag.shape[-1]
    n_blocks = -(-frames // T)
    padded = torch.nn.functional.pad(mix_mag, (0, n_blocks * T - frames))
    blocks = padded.reshape(*padded.shape[:-1], n_blocks, T).permute(2, 0, 1, 3)  # [blocks, C, F, T]
    outs = [model(blocks[i : i + BLOCKS_PER_FORWARD]) for i in range(0, n_blocks, BLOCKS_PER_FORWARD)]
    est = torch.cat(outs)  # [blocks, S, C, F, T]
    est = est.permute(1, 2, 3, 0, 4).reshape(*est.shape[1:4], n_blocks * T)  # [S, C, F, blocks*T]
    return est[..., :frames]


def separate(model: Separator, audio: np.ndarray, cfg: SpleeterConfig) -> tuple[np.ndarray, torch.Tensor]:
    """Separate a stereo waveform [2, N] at cfg.sample_rate -> (stems [S, 2, N] float32, estimates [S, 2, F, frames]).

    The estimated magnitudes come back too, so validation can compute its loss without a second forward pass.
    """
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(device)
    spec = _padded_stft(x, cfg)  # [2, bins, frames]
    est = estimate_magnitudes(model, spec[:, : cfg.F].abs(), cfg.T)
    masks = _masks_from_estimates(est, spec.shape[-2], cfg.mask_extension)
    return _masked_waveforms(spec, masks, cfg, x.shape[-1]).cpu().numpy(), est


def ideal_ratio_mask(sources: np.ndarray, cfg: SpleeterConfig) -> np.ndarray:
    """Upper bound with the same STFT, F and mask extension: sources [S+1, 2, N] (mixture first) -> [S, 2, N]."""
    x = torch.from_numpy(np.ascontiguousarray(sources, dtype=np.float32))
    spec = _padded_stft(x, cfg)  # [S+1, 2, bins, frames]
    masks = _masks_from_estimates(spec[1:, :, : cfg.F].abs(), spec.shape[-2], cfg.mask_extension)
    return _masked_waveforms(spec[0], masks, cfg, x.shape[-1]).numpy()


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """A whole file as stereo float32 [2, N] at `sample_rate`."""
    audio, rate = read_wav(path)
    return to_stereo(resample(audio, rate, sample_rate))


def separate_file(
    state: dict[str, Any], cfg_dict: dict[str, Any], wav_path: str | Path, out_dir: str | Path
) -> dict[str, Path]:
    """What the checkpoints page calls: separate one WAV with a checkpoint; writes and returns {stem: WAV path}.

    `state` is a loaded checkpoint (or the exported inference model), `cfg_dict` the run's config as stored.
    The stems are written at the model's sample rate as 32-bit float WAVs (no clipping of loud estimates).
    """
    cfg = SpleeterConfig.model_validate(cfg_dict)
    model = load_separator(state, cfg)
    audio = load_audio(wav_path, cfg.sample_rate)
    stems, _ = separate(model, audio, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {stem: write_wav(out / f"{stem}.wav", stems[i], cfg.sample_rate) for i, stem in enumerate(cfg.stem_names)}


# -- pictures --------------------------------------------------------------------------------------------------

# A perceptually ordered dark-blue -> yellow ramp (anchor colours of matplotlib's viridis), so no matplotlib needed.
_RAMP = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)


def spectrogram_image(
    audio: np.ndarray | str | Path,
    sample_rate: int | None = None,
    *,
    frame_length: int = 2048,
    frame_step: int = 512,
    top_db: float = 80.0,
    max_freq: float | None = None,
) -> np.ndarray:
    """An RGB picture (uint8 [H, W, 3], low frequencies at the bottom) of a waveform's dB spectrogram.

    `audio` is [C, N] or [N] (channels are averaged) with its `sample_rate`, or a WAV path. `max_freq` crops the
    picture (e.g. to the model's F bins); the dB range shown is the top `top_db` dB of the loudest bin.
    """
    if isinstance(audio, (str, Path)):
        audio, sample_rate = read_wav(audio)
    if sample_rate is None:
        raise ValueError("spectrogram_image needs the sample_rate of an array")
    mono = np.atleast_2d(np.asarray(audio, dtype=np.float32)).mean(axis=0)
    mono = np.pad(mono, (0, max(0, frame_length - mono.size)))
    mag = stft(torch.from_numpy(mono), frame_length, frame_step).abs().numpy()  # [bins, frames]
    if max_freq is not None:
        mag = mag[: max(1, int(max_freq / sample_rate * frame_length) + 1)]
    db = 20.0 * np.log10(np.maximum(mag, 1e-10))
    level = np.clip((db - (db.max() - top_db)) / top_db, 0.0, 1.0)[::-1]  # [H, W] in [0, 1], low freqs last
    pos = level * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    return (_RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac).astype(np.uint8)


def infer(state: dict[str, Any], cfg_dict: dict[str, Any], input_path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """The checkpoints page's "try it": the mixture and each separated stem as WAV, each with a spectrogram PNG.

    Returns {file name: path}, mixture first, in stem order. The PNGs show the model's frequency range (F bins).
    """
    from PIL import Image  # Pillow comes with Streamlit; only this UI helper needs it

    cfg = SpleeterConfig.model_validate(cfg_dict)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mixture = load_audio(input_path, cfg.sample_rate)
    files = {"mixture.wav": write_wav(out / "mixture.wav", mixture, cfg.sample_rate)}
    files.update({f"{stem}.wav": path for stem, path in separate_file(state, cfg_dict, input_path, out).items()})
    max_freq = cfg.F / cfg.frame_length * cfg.sample_rate
    for name in list(files):
        picture = out / name.replace(".wav", ".png")
        Image.fromarray(spectrogram_image(files[name], max_freq=max_freq)).save(picture)
        files[picture.name] = picture
    return files
