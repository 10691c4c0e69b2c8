"""A procedural song generator: a singing-like voice over drums, bass and chords, as separate stems.

Why it is built this way (see shared/reference/spleeter.md section 5, where the same recipe gave a Spleeter U-Net
about +10 dB over the mixture in a few hundred CPU steps):
- The voice has what separates a voice from an instrument: harmonics shaped by vowel formants (with a random
  "singer size"), vibrato that starts ~150 ms into each note, portamento between notes, jitter and shimmer, breath
  noise, "s"/"t" consonant bursts, and phrases with rests (so vocals are sometimes silent).
- Half of the songs also have a *lead* in the vocal register with plain odd harmonics and no vibrato or formants,
  so a net cannot just pass "whatever is in the vocal register".
- The mixture is the exact sum of the stems: stems are quantised to 16-bit first and summed as integers.
Everything is numpy; one 25 s song at 22.05 kHz takes about a second. Audio is float32 [2, N] (stereo).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.tasks.spleeter.audio import write_wav

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 0), (0, 5, 1, 4), (0, 3, 5, 4))
# Vowel formants F1..F3 in Hz (adult averages) and their relative gains; bandwidths grow with the formant.
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]], float)
FORMANT_GAINS = np.array([1.0, 0.5, 0.25])
FORMANT_BW = np.array([90.0, 110.0, 150.0])
CTRL_HOP = 64  # samples between control points (pitch, amplitude, formants), ~3 ms at 22.05 kHz

STEMS = ("vocals", "drums", "bass", "other")


def midi_hz(m: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=float) - 69.0) / 12.0)


def _pan(mono: np.ndarray, pan: float) -> np.ndarray:
    """Constant-power pan, pan in [-1 (left), 1 (right)]: [N] -> [2, N]."""
    angle = (pan + 1) * np.pi / 4
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)]).astype(np.float32)


def _add(track: np.ndarray, sound: np.ndarray, at: int) -> None:
    """Mix `sound` into `track` starting at sample `at`, cut at the track's end."""
    if at >= track.shape[-1] or at < 0:
        return
    n = min(sound.shape[-1], track.shape[-1] - at)
    track[..., at : at + n] += sound[..., :n]


class _Song:
    """Shared musical frame for one song: key, tempo, chord per bar."""

    def __init__(self, rng: np.random.Generator, duration: float, sr: int):
        self.rng, self.sr = rng, sr
        self.n = int(round(duration * sr))
        self.beat = 60.0 / rng.uniform(80, 140)  # seconds
        self.scale = MAJOR if rng.random() < 0.5 else MINOR
        self.root = int(rng.integers(45, 57))  # tonic as a MIDI note (A2..G#3)
        progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
        n_bars = int(np.ceil(duration / (4 * self.beat))) + 1
        self.chords = [progression[i % 4] for i in range(n_bars)]  # scale degree of each bar's chord

    def note(self, degree: int, octave: int = 0) -> int:
        """MIDI note of a scale degree (any integer; 7 = tonic an octave up)."""
        return self.root + 12 * (octave + degree // 7) + self.scale[degree % 7]

    def t(self, seconds: float) -> int:
        return int(round(seconds * self.sr))


def _drums(s: _Song) -> np.ndarray:
    rng, sr = s.rng, s.sr
    out = np.zeros((2, s.n), np.float32)
    tk = np.arange(int(0.35 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-tk / 0.03)) / sr) * np.exp(-tk / 0.12)
    ts = np.arange(int(0.25 * sr)) / sr
    th = np.arange(int(0.08 * sr)) / sr
    tone = rng.uniform(170, 220)
    steps = int(s.n / sr / (s.beat / 2)) + 1  # eighth notes
    for i in range(steps):
        at = s.t(i * s.beat / 2 + rng.normal(0, 0.004))
        pos = i % 8
        if pos in (0, 4) or (pos in (3, 5, 7) and rng.random() < 0.15):
            _add(out, _pan(kick * rng.uniform(0.7, 1.0), 0.0), at)
        if pos in (2, 6) or (pos == 7 and rng.random() < 0.08):
            noise = rng.standard_normal(ts.size) * np.exp(-ts / 0.07)
            snare = 0.6 * noise + 0.4 * np.sin(2 * np.pi * tone * ts) * np.exp(-ts / 0.05)
            _add(out, _pan(snare * rng.uniform(0.5, 0.8), -0.1), at)
        decay = 0.15 if rng.random() < 0.08 else 0.02  # occasional open hi-hat
        hat = np.diff(rng.standard_normal(th.size + 1)) * np.exp(-th / decay) * rng.uniform(0.08, 0.2)
        _add(out, _pan(hat, 0.35), at)
    return out


def _bass(s: _Song) -> np.ndarray:
    rng, sr = s.rng, s.sr
    out = np.zeros(s.n, np.float32)
    note_len = s.beat * (1 if rng.random() < 0.6 else 2)
    t = np.arange(int(note_len * sr)) / sr
    k = np.arange(1, 9)[:, None]
    env = np.minimum(1.0, t / 0.005) * np.minimum(1.0, (note_len - t) / 0.02)
    for i in range(int(s.n / sr / note_len) + 1):
        start = i * note_len
        bar = int(start / (4 * s.beat))
        if rng.random() < 0.1:
            continue
        midi = s.note(s.chords[bar], octave=-1)
        midi = midi - 12 if midi > 45 else midi
        f = midi_hz(midi)
        partials = np.sin(2 * np.pi * k * f * t) / k * np.exp(-t * (2.0 + 0.7 * k))
        _add(out, (partials.sum(0) * env).astype(np.float32), s.t(start))
    return _pan(out * 0.5, 0.0)


def _chords(s: _Song) -> np.ndarray:
    """Piano-like (slightly inharmonic, decaying) or pad (sustained, soft attack) chords, panned."""
    rng, sr = s.rng, s.sr
    out = np.zeros(s.n, np.float32)
    piano = rng.random() < 0.5
    hit = s.beat * (2 if piano else 4)
    t = np.arange(int(hit * sr)) / sr
    k = np.arange(1, 11 if piano else 13)[:, None]
    for i in range(int(s.n / sr / hit) + 1):
        start = i * hit
        degree = s.chords[int(start / (4 * s.beat))]
        for d in (degree, degree + 2, degree + 4):
            f = midi_hz(s.note(d, octave=1))
            if piano:
                fk = k * f * np.sqrt(1 + 4e-4 * k**2)
                tone = np.sin(2 * np.pi * fk * t) / k**1.5 * np.exp(-t * (1.5 + 0.8 * k))
                env = np.minimum(1.0, t / 0.003)
            else:
                detune = 2 ** (rng.uniform(-8, 8) / 1200)
                tone = (np.sin(2 * np.pi * k * f * t) + np.sin(2 * np.pi * k * f * detune * t)) / k * 0.5
                env = np.minimum(1.0, t / 0.3) * np.minimum(1.0, (hit - t) / 0.3)
            _add(out, (tone.sum(0) * env * 0.15).astype(np.float32), s.t(start))
    return _pan(out, rng.uniform(-0.5, 0.5))


def _phrases(s: _Song) -> list[tuple[float, float, int]]:
    """Notes (start s, end s, scale degree) grouped in 2-6 s phrases separated by 0.5-3 s rests."""
    rng = s.rng
    notes: list[tuple[float, float, int]] = []
    t = rng.uniform(0.2, 1.5)
    duration = s.n / s.sr
    degree = int(rng.integers(0, 5))
    while t < duration - 0.5:
        phrase_end = min(duration, t + rng.uniform(2.0, 6.0))
        while t < phrase_end:
            length = max(0.2, s.beat * float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])))
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), -3, 9))
            notes.append((t, min(t + length, duration), degree))
            t += length
        t += rng.uniform(0.5, 3.0)
    return notes


def _voice_tracks(s: _Song, notes: list[tuple[float, float, int]], octave: int, *, singer: bool) -> tuple[np.ndarray, ...]:
    """Control-rate tracks: log-pitch (MIDI, smoothed = portamento), amplitude, vowel formants [3, Nc]."""
    rng = s.rng
    nc = s.n // CTRL_HOP + 2
    ctrl_dt = CTRL_HOP / s.sr
    target = np.zeros(nc)
    amp = np.zeros(nc)
    formants = np.zeros((3, nc))
    vibrato = np.zeros(nc)
    size = rng.uniform(0.85, 1.15)  # "singer size": scales the vocal tract, hence all formants
    depth, rate = rng.uniform(0.2, 0.6), rng.uniform(4.5, 6.5)  # semitones (20-60 cents), Hz
    for start, end, degree in notes:
        a, b = int(start / ctrl_dt), int(end / ctrl_dt)
        target[a:b] = s.note(degree, octave)
        tn = np.arange(b - a) * ctrl_dt
        env = np.minimum(1.0, tn / rng.uniform(0.03, 0.06)) * np.minimum(1.0, (end - start - tn) / 0.06)
        amp[a:b] = np.maximum(amp[a:b], env * rng.uniform(0.7, 1.0))
        formants[:, a:b] = (VOWELS[rng.integers(len(VOWELS))] / size)[:, None]
        if singer:  # vibrato fades in ~150 ms after the onset
            ramp = np.clip((tn - 0.15) / 0.2, 0.0, 1.0)
            vibrato[a:b] = depth * ramp * np.sin(2 * np.pi * rate * tn + rng.uniform(0, 2 * np.pi))
    # Portamento: one-pole glide in log-pitch within a phrase (about 40 ms), restarted after rests.
    pitch = target.copy()
    alpha = 1.0 - np.exp(-ctrl_dt / (0.04 if singer else 0.01))
    for i in range(1, nc):
        if target[i] > 0 and target[i - 1] > 0:
            pitch[i] = pitch[i - 1] + alpha * (target[i] - pitch[i - 1])
    if singer:
        jitter = np.convolve(rng.standard_normal(nc), np.ones(8) / 8, mode="same") * 0.08  # ~8 cents
        shimmer = np.exp(np.convolve(rng.standard_normal(nc), np.ones(8) / 8, mode="same") * 0.1)
        pitch = pitch + vibrato + jitter
        amp = amp * shimmer
        alpha_f = 1.0 - np.exp(-ctrl_dt / 0.04)  # vowels glide into each other
        for i in range(1, nc):
            if formants[0, i] > 0 and formants[0, i - 1] > 0:
                formants[:, i] = formants[:, i - 1] + alpha_f * (formants[:, i] - formants[:, i - 1])
    return pitch, amp, formants


def _harmonic_synth(s: _Song, pitch: np.ndarray, amp: np.ndarray, formants: np.ndarray | None) -> np.ndarray:
    """Additive synthesis: sum_k a_k(t) sin(k phi(t)); a_k from a source slope and, for a voice, the formants."""
    sr = s.sr
    ctrl_t = np.arange(pitch.size) * CTRL_HOP
    sample_t = np.arange(s.n)
    f0_ctrl = np.where(pitch > 0, midi_hz(pitch), 0.0)
    f0 = np.interp(sample_t, ctrl_t, f0_ctrl)
    phase = 2 * np.pi * np.cumsum(f0) / sr  # float64 keeps the phase exact over minutes
    out = np.zeros(s.n)
    voiced = f0_ctrl > 0
    if not voiced.any():
        return out.astype(np.float32)
    k_max = int(0.45 * sr / f0_ctrl[voiced].min())
    for k in range(1, min(k_max, 60) + 1):
        fk = k * f0_ctrl
        if formants is None:  # odd harmonics only, 1/k: a clarinet-like lead with no formant structure
            if k % 2 == 0:
                continue
            a_k = amp / k
        else:
            lorentz = FORMANT_GAINS[:, None] / (1.0 + ((fk[None] - formants) / (FORMANT_BW[:, None] / 2)) ** 2)
            a_k = amp * k**-0.6 * (lorentz.sum(0) + 0.02)
        a_k = np.where(fk < 0.45 * sr, a_k, 0.0)  # no aliasing
        if not a_k.any():
            continue
        out += np.interp(sample_t, ctrl_t, a_k) * np.sin(k * phase)
    return out.astype(np.float32)


def _noise_bursts(s: _Song, notes: list[tuple[float, float, int]], amp_level: float) -> np.ndarray:
    """Breath before each phrase and "s"/"t" consonants at some note onsets (unvoiced parts of singing)."""
    rng, sr = s.rng, s.sr
    out = np.zeros(s.n, np.float32)
    previous_end = -1.0
    for start, end, _ in notes:
        if start - previous_end > 0.3:  # a phrase starts: breathe in just before it
            length = int(rng.uniform(0.15, 0.3) * sr)
            tb = np.arange(length) / length
            breath = np.convolve(rng.standard_normal(length), np.ones(4) / 4, mode="same") * np.sin(np.pi * tb)
            _add(out, (breath * 0.04 * amp_level).astype(np.float32), s.t(start) - length)
        elif rng.random() < 0.3:
            if rng.random() < 0.5:  # "s": high-passed noise
                length = int(rng.uniform(0.06, 0.12) * sr)
                burst = np.diff(rng.standard_normal(length + 1)) * np.hanning(length) * 0.08
            else:  # "t": short broadband click
                length = int(0.015 * sr)
                burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.004 * sr)) * 0.15
            _add(out, (burst * amp_level).astype(np.float32), s.t(start))
        previous_end = end
    return out


def _vocals(s: _Song) -> np.ndarray:
    notes = _phrases(s)
    octave = 0 if s.rng.random() < 0.5 else 1  # low or high voice
    pitch, amp, formants = _voice_tracks(s, notes, octave, singer=True)
    voice = _harmonic_synth(s, pitch, amp, formants)
    voice /= max(np.abs(voice).max(), 1e-6)
    aspiration = np.interp(np.arange(s.n), np.arange(amp.size) * CTRL_HOP, amp) * s.rng.standard_normal(s.n) * 0.02
    voice = voice + aspiration.astype(np.float32) + _noise_bursts(s, notes, 1.0)
    return _pan(voice, s.rng.uniform(-0.1, 0.1))


def _lead(s: _Song) -> np.ndarray:
    notes = _phrases(s)
    pitch, amp, _ = _voice_tracks(s, notes, octave=1, singer=False)
    lead = _harmonic_synth(s, pitch, amp, None)
    return _pan(lead / max(np.abs(lead).max(), 1e-6) * 0.3, s.rng.uniform(-0.4, 0.4))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


def generate_song(seed: int | Sequence[int], duration: float, sample_rate: int) -> dict[str, np.ndarray]:
    """Stems of one song as int16 [2, N]: vocals, drums, bass, other, accompaniment, mixture (exact integer sums)."""
    rng = np.random.default_rng(seed)
    s = _Song(rng, duration, sample_rate)
    drums = _drums(s) * rng.uniform(0.6, 1.0)
    bass = _bass(s) * rng.uniform(0.6, 1.0)
    other = _chords(s)
    if rng.random() < 0.5:
        other = other + _lead(s)
    vocals = _vocals(s)
    accompaniment = drums + bass + other
    ratio_db = rng.uniform(-6.0, 3.0)  # vocal-to-accompaniment level
    vocals *= 10 ** (ratio_db / 20) * _rms(accompaniment) / _rms(vocals)
    peak = max(np.abs(x).max() for x in (vocals + accompaniment, accompaniment, vocals))
    gain = 0.9 * 32767 / peak  # one gain for all stems keeps mixture = sum of stems
    q = {name: np.round(x * gain).astype(np.int32) for name, x in zip(STEMS, (vocals, drums, bass, other))}
    q["accompaniment"] = q["drums"] + q["bass"] + q["other"]
    q["mixture"] = q["vocals"] + q["accompaniment"]
    return {name: np.clip(x, -32768, 32767).astype(np.int16) for name, x in q.items()}


SONG_FILES = {"mixture": "mixture.wav", "vocals": "vocals.wav", "accompaniment": "instrumental.wav",
              "drums": "drums.wav", "bass": "bass.wav", "other": "other.wav"}


def write_song(folder: Path, seed: int | Sequence[int], duration: float, sample_rate: int, four_stems: bool = False) -> Path:
    """Write one generated song folder (mixture.wav, vocals.wav, instrumental.wav [+ drums, bass, other])."""
    folder.mkdir(parents=True, exist_ok=True)
    stems = generate_song(seed, duration, sample_rate)
    for name, filename in SONG_FILES.items():
        if name in ("drums", "bass", "other") and not four_stems:
            continue
        write_wav(folder / filename, stems[name], sample_rate)
    return folder
