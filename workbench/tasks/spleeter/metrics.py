"""Separation metrics on waveforms: the music-demixing "new SDR" and SI-SDR, in dB (higher is better).

Why two: plain SDR rewards any estimate at the right level (an untrained net whose masks are ~0.5 already scores
about +2 dB on vocals), while SI-SDR first fits the best gain, so a scaled copy of the mixture scores what it is
worth. Report both against the mixture-as-estimate baseline and the ideal-ratio-mask upper bound
(shared/reference/spleeter.md section 3).
Arrays are float [C, N] (channels, samples) for one source of one song.
"""

from __future__ import annotations

import numpy as np

SDR_EPS = 1e-7  # demucs / MDX challenge constant: keeps silent references finite
SI_SDR_EPS = 1e-8


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """MDX "new SDR": 10 log10((sum s^2 + eps) / (sum (s - s_hat)^2 + eps)) over all channels and samples."""
    s = np.asarray(reference, dtype=np.float64)
    e = np.asarray(estimate, dtype=np.float64)
    num = np.sum(s**2) + SDR_EPS
    den = np.sum((s - e) ** 2) + SDR_EPS
    return float(10.0 * np.log10(num / den))


def si_sdr(reference: np.ndarray, estimate: np.ndarray, zero_mean: bool = True) -> float:
    """Scale-invariant SDR, averaged over channels: alpha = <s_hat, s>/|s|^2, 10 log10(|alpha s|^2/|alpha s - s_hat|^2)."""
    s = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    e = np.atleast_2d(np.asarray(estimate, dtype=np.float64))
    if zero_mean:
        s = s - s.mean(axis=-1, keepdims=True)
        e = e - e.mean(axis=-1, keepdims=True)
    alpha = (np.sum(e * s, axis=-1, keepdims=True) + SI_SDR_EPS) / (np.sum(s**2, axis=-1, keepdims=True) + SI_SDR_EPS)
    target = alpha * s
    noise = target - e
    ratio = (np.sum(target**2, axis=-1) + SI_SDR_EPS) / (np.sum(noise**2, axis=-1) + SI_SDR_EPS)
    return float(np.mean(10.0 * np.log10(ratio)))


def song_scores(
    stems: list[str], references: np.ndarray, estimates: np.ndarray, suffix: str = ""
) -> dict[str, float]:
    """Scores of one song: {sdr_<stem><suffix>, si_sdr_<stem><suffix>}; arrays [S, C, N]."""
    out: dict[str, float] = {}
    for i, stem in enumerate(stems):
        out[f"sdr_{stem}{suffix}"] = sdr(references[i], estimates[i])
        out[f"si_sdr_{stem}{suffix}"] = si_sdr(references[i], estimates[i])
    return out


def summarize(per_song: list[dict[str, float]], stems: list[str], prefix: str = "valid") -> dict[str, float]:
    """Median over songs (as museval aggregates tracks) of every score, plus improvements over the mixture.

    `<prefix>/si_sdri_<stem>` is the median of per-song (model - mixture) SI-SDR, not the difference of medians.
    """
    keys = per_song[0].keys()
    out = {f"{prefix}/{k}": float(np.median([song[k] for song in per_song])) for k in keys}
    for stem in stems:
        for metric in ("sdr", "si_sdr"):
            model, mixture = f"{metric}_{stem}", f"{metric}_{stem}_mixture"
            if model in keys and mixture in keys:
                gains = [song[model] - song[mixture] for song in per_song]
                out[f"{prefix}/{metric}i_{stem}"] = float(np.median(gains))
    return out
