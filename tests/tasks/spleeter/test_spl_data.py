"""Manifests, chunking, bad input, the two datasets and the process_data cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.tasks.spleeter.audio import write_wav
from workbench.tasks.spleeter.config import SpleeterConfig
from workbench.tasks.spleeter.data import (
    AudioChunks,
    CachedChunks,
    DataError,
    EpochSampler,
    build_cache,
    check_songs,
    chunk_starts,
    prepare_songs,
    read_manifest,
    write_manifest,
)

RATE = 8000
STEMS = ("vocals", "accompaniment")


def small_cfg(**kw) -> SpleeterConfig:
    base = dict(sample_rate=RATE, frame_length=256, frame_step=64, F=32, T=16, chunk_duration=1.0, margin=0.25,
                n_chunks_per_song=3, train_manifest="manifest.csv")
    return SpleeterConfig(**(base | kw))


def make_song(folder: Path, seconds: float = 3.0, rate: int = RATE, channels: int = 2, seed: int = 0,
              mix_seconds: float | None = None) -> Path:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    vocals = rng.uniform(-0.4, 0.4, (channels, n)).astype(np.float32)
    accomp = rng.uniform(-0.4, 0.4, (channels, n)).astype(np.float32)
    mix = vocals + accomp
    if mix_seconds is not None:
        mix = mix[:, : int(mix_seconds * rate)]
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / "mixture.wav", mix, rate)
    write_wav(folder / "vocals.wav", vocals, rate)
    write_wav(folder / "instrumental.wav", accomp, rate)
    return folder


def test_chunk_starts_as_spleeter():
    # start_k = k * (duration - chunk - 2*margin) / (n - 1) + margin
    assert chunk_starts(30.0, 20.0, 0.5, 3) == pytest.approx([0.5, 5.0, 9.5])
    assert chunk_starts(30.0, 20.0, 0.5, 1) == pytest.approx([5.0])  # n = 1: the centre
    assert chunk_starts(21.0, 20.0, 0.5, 2) == pytest.approx([0.5, 0.5])
    assert chunk_starts(10.0, 20.0, 0.5, 2) == [0.5, 0.0]  # clamped at 0 like Spleeter (the port drops it)


def test_manifest_with_and_without_header(tmp_path):
    (tmp_path / "a.csv").write_text("s1/mix.wav,s1/voc.wav,s1/inst.wav,30.0,44100\n\n/abs/mix.wav,v.wav,i.wav,1,2\n")
    rows = read_manifest(tmp_path / "a.csv", tmp_path, STEMS)
    assert [r[0] for r in rows] == [1, 3]
    assert rows[0][1] == tmp_path / "s1/mix.wav" and rows[0][2] == [tmp_path / "s1/voc.wav", tmp_path / "s1/inst.wav"]
    assert rows[1][1] == Path("/abs/mix.wav")
    (tmp_path / "b.csv").write_text("instrumental_path,mix_path,vocal_path,duration,samplerate\ni.wav,m.wav,v.wav,3,8000\n")
    rows = read_manifest(tmp_path / "b.csv", tmp_path, STEMS)
    assert rows[0][1:] == (tmp_path / "m.wav", [tmp_path / "v.wav", tmp_path / "i.wav"])


def test_manifest_bad_rows_reported_with_line(tmp_path):
    (tmp_path / "bad.csv").write_text("m.wav,v.wav,i.wav,3,8000\nm.wav,v.wav\nm.wav,v.wav,i.wav,3,8000,extra\n")
    with pytest.raises(DataError) as err:
        read_manifest(tmp_path / "bad.csv", tmp_path, STEMS)
    assert len(err.value.problems) == 2
    assert "bad.csv:2: expected 5 columns, found 2" in err.value.problems[0]
    assert "bad.csv:3" in err.value.problems[1]
    (tmp_path / "four.csv").write_text("mix_path,vocals_path,drums_path,bass_path\nm,v,d,b\n")
    with pytest.raises(DataError, match="no column for other"):
        read_manifest(tmp_path / "four.csv", tmp_path, ("vocals", "drums", "bass", "other"))
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv", tmp_path, STEMS)


def test_bad_audio_reported_before_training(tmp_path):
    make_song(tmp_path / "good")
    make_song(tmp_path / "short", seconds=1.2)  # < chunk_duration + 2*margin = 1.5 s: skipped with a warning
    make_song(tmp_path / "mono", channels=1)
    make_song(tmp_path / "resampled", rate=16000)
    make_song(tmp_path / "misaligned", mix_seconds=2.0)
    make_song(tmp_path / "missing").joinpath("vocals.wav").unlink()
    make_song(tmp_path / "corrupt").joinpath("instrumental.wav").write_bytes(b"garbage")
    n, skipped = write_manifest(tmp_path, tmp_path / "manifest.csv", STEMS)
    assert n == 6 and len(skipped) == 1 and "missing" in skipped[0]  # no vocals file: no manifest row
    with open(tmp_path / "manifest.csv", "a") as f:
        f.write("missing/mixture.wav,missing/vocals.wav,missing/instrumental.wav,3.0,8000\n")
    cfg = small_cfg(train_dataset=str(tmp_path))
    entries = read_manifest(tmp_path / "manifest.csv", tmp_path, STEMS)
    with pytest.raises(DataError) as err:
        check_songs(entries, tmp_path / "manifest.csv", cfg)
    text = "\n".join(err.value.problems)
    assert "manifest.csv:8: " in text and "vocals.wav: file not found" in text
    assert "instrumental.wav: not a WAV file" in text
    assert "differ in length" in text and "mixture.wav 2.00 s" in text
    assert len(err.value.problems) == 3
    good = [e for e in entries if e[1].parent.name in ("good", "short", "mono", "resampled")]
    songs, warnings = check_songs(good, tmp_path / "manifest.csv", cfg)
    assert sorted(s.mix.parent.name for s in songs) == ["good", "mono", "resampled"]
    joined = "\n".join(warnings)
    assert "'short' is 1.20 s" in joined and "skipped" in joined
    assert "16000 Hz; resampled to 8000 Hz" in joined
    assert "1 channel(s); duplicated to stereo" in joined


def test_train_mode_item_and_resampled_song(tmp_path):
    make_song(tmp_path / "a", rate=16000)
    write_manifest(tmp_path, tmp_path / "manifest.csv", STEMS)
    cfg = small_cfg(train_dataset=str(tmp_path), valid_manifest="manifest.csv")
    train, valid, _ = prepare_songs(cfg, tmp_path / "cache", lambda d, t: None)
    ds = AudioChunks(train, cfg)
    assert len(ds) == 3  # n_chunks_per_song
    item = ds[1]
    assert item.shape == (3, 2, cfg.F, cfg.T) and item.dtype == torch.float32
    # the stems add up to the mixture, so their magnitudes obey the triangle inequality
    assert bool((item[0] <= item[1] + item[2] + 1e-3).all())


def test_process_data_cache_round_trip(tmp_path):
    for i in range(2):
        make_song(tmp_path / f"s{i}", seed=i)
    write_manifest(tmp_path, tmp_path / "manifest.csv", STEMS)
    cfg = small_cfg(train_dataset=str(tmp_path), mode="process_data", valid_manifest="manifest.csv")
    train, _, _ = prepare_songs(cfg, tmp_path / "cache", lambda d, t: None)
    seen = []
    folder, reused = build_cache(train, cfg, tmp_path / "cache", lambda d, t: seen.append((d, t)))
    assert not reused and seen[0] == (0, 2) and seen[-1] == (2, 2)
    assert not list(folder.parent.glob("*.tmp-*"))  # built in a temporary folder, renamed into place
    cached, live = CachedChunks(folder, cfg.T), AudioChunks(train, cfg)
    assert len(cached) == len(live) == 6
    for index in (0, 4):
        torch.manual_seed(123)
        a = cached[index]
        torch.manual_seed(123)  # the same random crop offset in both datasets
        b = live[index]
        torch.testing.assert_close(a, b, atol=0.05, rtol=2e-3)  # float16 storage
    again, reused = build_cache(train, cfg, tmp_path / "cache", lambda d, t: None)
    assert reused and again == folder
    other, _ = build_cache(train, cfg.model_copy(update={"F": 16}), tmp_path / "cache", lambda d, t: None)
    assert other != folder  # keyed by the STFT settings


def test_validation_split_and_sampler(tmp_path):
    for i in range(5):
        make_song(tmp_path / f"s{i}", seed=i)
    write_manifest(tmp_path, tmp_path / "manifest.csv", STEMS)
    cfg = small_cfg(train_dataset=str(tmp_path), train_ratio=0.6)
    train, valid, _ = prepare_songs(cfg, tmp_path / "cache", lambda d, t: None)
    assert (len(train), len(valid)) == (3, 2) and not {s.name for s in train} & {s.name for s in valid}
    sampler = EpochSampler(10, seed=1)
    sampler.set_epoch(3)
    order = list(sampler)
    sampler.set_epoch(3, skip=4)
    assert list(sampler) == order[4:] and len(sampler) == 6
    shards = [list(EpochSampler(10, 1, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5 and not set(shards[0]) & set(shards[1])
