"""The song generator and the `workbench data synth-songs` / `manifest` commands."""

from __future__ import annotations

import numpy as np

from workbench.tasks.spleeter.audio import read_wav
from workbench.tasks.spleeter.cli import manifest, synth_songs
from workbench.tasks.spleeter.data import read_manifest
from workbench.tasks.spleeter.synth import generate_song


def test_mixture_is_exact_sum_and_deterministic():
    a = generate_song([1, 0, 0], 6.0, 8000)
    assert a["mixture"].shape == (2, 48000) and a["mixture"].dtype == np.int16
    assert np.array_equal(a["mixture"].astype(int), a["vocals"].astype(int) + a["accompaniment"])
    assert np.array_equal(a["accompaniment"].astype(int), a["drums"].astype(int) + a["bass"] + a["other"])
    b = generate_song([1, 0, 0], 6.0, 8000)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = generate_song([1, 0, 1], 6.0, 8000)
    assert not np.array_equal(a["vocals"], c["vocals"])


def test_vocals_have_phrases_with_rests():
    song = generate_song([2, 0, 0], 20.0, 8000)
    frames = np.abs(song["vocals"].astype(float)).mean(0).reshape(-1, 800)  # 0.1 s frames
    silent = (frames.max(1) < 50).mean()
    assert 0.05 < silent < 0.7  # sometimes silent, mostly singing
    assert np.abs(song["accompaniment"]).max() > 1000


def test_synth_songs_and_manifest_commands(tmp_path, capsys):
    synth_songs(tmp_path / "songs", songs=2, duration=3.0, sample_rate=8000, seed=0, four_stems=True)
    out = capsys.readouterr().out
    assert "2 songs and" in out
    folder = tmp_path / "songs" / "song_0001"
    assert {p.name for p in folder.iterdir()} == {"mixture.wav", "vocals.wav", "instrumental.wav", "drums.wav",
                                                  "bass.wav", "other.wav"}
    mix, rate = read_wav(folder / "mixture.wav")
    vocals, _ = read_wav(folder / "vocals.wav")
    inst, _ = read_wav(folder / "instrumental.wav")
    assert rate == 8000 and np.array_equal(mix, vocals + inst)  # exact in 16-bit integers
    rows = read_manifest(tmp_path / "songs" / "manifest.csv", tmp_path / "songs", ("vocals", "accompaniment"))
    assert len(rows) == 2 and rows[1][1] == folder / "mixture.wav"
    rows = read_manifest(tmp_path / "songs" / "manifest.csv", tmp_path / "songs", ("vocals", "drums", "bass", "other"))
    assert rows[1][2][3] == folder / "other.wav"
    manifest(tmp_path / "songs", out=tmp_path / "four.csv", stems=4)
    rows = read_manifest(tmp_path / "four.csv", tmp_path / "songs", ("vocals", "drums", "bass", "other"))
    assert rows[0][2][1].name == "drums.wav"
