"""Songs, manifests, Spleeter's chunking, the two training datasets and the process_data cache.

A training item is one T-frame crop of one chunk of one song: a float32 tensor [S+1, 2, F, T] of magnitudes where
index 0 is the mixture and 1..S are the stems in `cfg.stem_names` order. Both modes produce exactly this:
- `train` (AudioChunks): reads only the samples the crop needs from the WAV files and takes their STFT. With
  center=False, frames r..r+T-1 of a chunk's STFT are exactly the STFT of samples [r*hop, (r+T-1)*hop + L), so this
  equals Spleeter's "load 20 s, STFT, crop" at a fraction of the decoding cost.
- `process_data` (CachedChunks): every chunk's full spectrogram is computed once into a float16 memory map keyed by
  the data and STFT settings; training then only copies a crop out of it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from workbench.settings import get_settings
from workbench.tasks.spleeter.audio import AudioError, magnitude, read_wav, resample, to_stereo, wav_info
from workbench.tasks.spleeter.config import SpleeterConfig

# Manifest column names per stem; the first name is what `workbench data manifest` writes.
STEM_COLUMNS: dict[str, tuple[str, ...]] = {
    "vocals": ("vocal_path", "vocals_path"),
    "accompaniment": ("instrumental_path", "accompaniment_path"),
    "drums": ("drums_path",),
    "bass": ("bass_path",),
    "other": ("other_path",),
}
# Filename substrings that identify each file in a song folder (the port's preprocess.py matching).
FILE_PATTERNS: dict[str, tuple[str, ...]] = {
    "mixture": ("mix",),
    "vocals": ("vocal",),
    "accompaniment": ("instru", "accomp"),
    "drums": ("drum",),
    "bass": ("bass",),
    "other": ("other",),
}
LENGTH_TOLERANCE_S = 0.05  # stems may be this much shorter/longer than the mixture (encoder padding), no more


class DataError(ValueError):
    """Problems found in the data, one line each with the manifest row and file."""

    def __init__(self, problems: list[str], source: str = "data"):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Song:
    name: str  # shown in messages: "manifest.csv:12 (song_007)"
    mix: Path
    stems: tuple[Path, ...]  # in cfg.stem_names order
    duration: float  # seconds, of the shortest file


# -- manifests --------------------------------------------------------------------------------------------------


def read_manifest(path: Path, dataset_dir: Path, stem_names: tuple[str, ...]) -> list[tuple[int, Path, list[Path]]]:
    """Parse a manifest into (line, mix path, stem paths); raises DataError listing every bad row.

    Accepted: the port's header-less rows `mix, vocal, instrumental, duration, samplerate` (duration and samplerate
    are informational: the WAV headers are read anyway), or any column order under a header naming mix_path and
    the stems' columns (vocal_path/instrumental_path, or vocals_path, drums_path, bass_path, other_path).
    """
    if not path.is_file():
        raise DataError([f"manifest not found: {path} (make one with `workbench data manifest DIR`)"])
    with open(path, newline="") as f:
        rows = [(i + 1, [c.strip() for c in row]) for i, row in enumerate(csv.reader(f)) if any(c.strip() for c in row)]
    if not rows:
        raise DataError([f"{path}: the manifest is empty"])
    problems: list[str] = []
    first = [c.lower() for c in rows[0][1]]
    if "mix_path" in first:
        columns = {name: i for i, name in enumerate(first)}
        picks: list[int] = [columns["mix_path"]]
        for stem in stem_names:
            found = [columns[c] for c in STEM_COLUMNS[stem] if c in columns]
            if not found:
                problems.append(f"{path}:1: header has no column for {stem} (expected one of {STEM_COLUMNS[stem]})")
            picks.append(found[0] if found else -1)
        if problems:
            raise DataError(problems)
        body, width = rows[1:], len(first)
    else:
        picks, body = list(range(1 + len(stem_names))), rows
        width = len(picks) + 2  # + duration, samplerate
        if len(stem_names) != 2:
            problems.append(f"{path}:1: a {len(stem_names)}-stem manifest needs a header row naming its columns")
            raise DataError(problems)
    out: list[tuple[int, Path, list[Path]]] = []
    for line, row in body:
        if len(row) != width:
            problems.append(f"{path}:{line}: expected {width} columns, found {len(row)}: {','.join(row)}")
            continue
        paths = [_resolve(row[i], dataset_dir) for i in picks]
        out.append((line, paths[0], paths[1:]))
    if problems:
        raise DataError(problems)
    if not out:
        raise DataError([f"{path}: no song rows"])
    return out


def _resolve(value: str, dataset_dir: Path) -> Path:
    p = Path(value)
    return p if p.is_absolute() else dataset_dir / p


def write_manifest(folder: Path, out: Path, stem_names: tuple[str, ...]) -> tuple[int, list[str]]:
    """Write a manifest (with header) for one-song-per-subfolder data; returns (songs written, skipped reasons)."""
    header = ["mix_path", *(STEM_COLUMNS[s][0] for s in stem_names), "duration", "samplerate"]
    rows, skipped = [], []
    for song in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in song.iterdir() if p.is_file() and p.suffix.lower() == ".wav")
        picked: list[Path] = []
        for kind in ("mixture", *stem_names):
            match = [p for p in files if any(pat in p.name.lower() for pat in FILE_PATTERNS[kind])]
            if len(match) != 1:
                what = "no" if not match else f"{len(match)}"
                skipped.append(f"{song.name}: {what} WAV file matching {FILE_PATTERNS[kind]} for {kind}")
                break
            picked.append(match[0])
        else:
            try:
                info = wav_info(picked[0])
            except AudioError as exc:
                skipped.append(f"{song.name}: {exc}")
                continue
            rel = [str(p.relative_to(folder)) for p in picked]
            rows.append([*rel, f"{info.duration:.3f}", str(info.sample_rate)])
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return len(rows), skipped


def check_songs(
    entries: list[tuple[int, Path, list[Path]]], manifest: Path, cfg: SpleeterConfig, *, for_training: bool = True
) -> tuple[list[Song], list[str]]:
    """Open every file's header before training: returns usable songs and warnings; raises DataError on problems.

    Errors: missing or unreadable files, stems whose length differs from the mixture. Warnings: resampling, mono
    or >2-channel files, training songs too short for one chunk (skipped, as Spleeter filters them out).
    """
    problems, warnings, songs = [], [], []
    shortest = cfg.chunk_duration + 2 * cfg.margin if for_training else cfg.frame_length / cfg.sample_rate
    for line, mix, stems in entries:
        where = f"{manifest.name}:{line}"
        infos = []
        for p in (mix, *stems):
            try:
                infos.append(wav_info(p))
            except AudioError as exc:
                problems.append(f"{where}: {exc}")
        if len(infos) != 1 + len(stems):
            continue
        name = mix.parent.name if mix.parent.name else mix.stem
        for info in infos:
            if info.sample_rate != cfg.sample_rate:
                warnings.append(f"{where}: {info.path.name} is {info.sample_rate} Hz; resampled to {cfg.sample_rate} Hz")
            if info.channels != 2:
                fix = "duplicated to stereo" if info.channels == 1 else "first two channels used"
                warnings.append(f"{where}: {info.path.name} has {info.channels} channel(s); {fix}")
        lengths = [i.duration for i in infos]
        if max(lengths) - min(lengths) > LENGTH_TOLERANCE_S:
            detail = ", ".join(f"{i.path.name} {i.duration:.2f} s" for i in infos)
            problems.append(f"{where}: the mixture and stems differ in length ({detail})")
            continue
        duration = min(lengths)
        if duration < shortest:
            warnings.append(
                f"{where}: song {name!r} is {duration:.2f} s, shorter than {shortest:g} s (chunk_duration + 2*margin "
                "for training, one STFT frame for validation); skipped"
            )
            continue
        songs.append(Song(f"{where} ({name})", mix, tuple(stems), duration))
    if problems:
        raise DataError(problems, str(manifest))
    if not songs:
        raise DataError([f"no usable song (all shorter than {shortest:g} s?)"], str(manifest))
    return songs, warnings


# -- chunking and reading -----------------------------------------------------------------------------------------


def chunk_starts(duration: float, chunk_duration: float, margin: float, n_chunks: int) -> list[float]:
    """Spleeter's chunk starts in seconds: n chunks spaced evenly between the margins; n = 1 takes the centre.

    start_k = k * (duration - chunk_duration - 2*margin) / (n - 1) + margin, clamped at 0 as Spleeter does (the
    PyTorch port drops those chunks instead).
    """
    if n_chunks == 1:
        return [max(0.0, duration / 2 - chunk_duration / 2)]
    span = duration - chunk_duration - 2 * margin
    return [max(0.0, k * span / (n_chunks - 1) + margin) for k in range(n_chunks)]


def load_segment(path: Path, start: int, length: int, sample_rate: int) -> np.ndarray:
    """Samples [start, start+length) at `sample_rate` (resampling a slightly wider excerpt): float32 [2, length]."""
    info = wav_info(path)
    if info.sample_rate == sample_rate:
        audio, _ = read_wav(path, start, length)
    else:
        ratio = info.sample_rate / sample_rate
        guard = 64  # extra source samples on each side so the FFT resampler's edge ringing falls outside the cut
        src_start = max(0, int(start * ratio) - guard)
        audio, _ = read_wav(path, src_start, int(length * ratio) + 2 * guard)
        audio = resample(audio, info.sample_rate, sample_rate)
        offset = round((start * ratio - src_start) / ratio)
        audio = audio[:, offset : offset + length]
    audio = to_stereo(audio)
    if audio.shape[1] < length:
        audio = np.pad(audio, ((0, 0), (0, length - audio.shape[1])))
    return audio


def load_sources(song: Song, start: int, length: int, sample_rate: int) -> np.ndarray:
    """Mixture and stems of one song excerpt: float32 [S+1, 2, length]."""
    return np.stack([load_segment(p, start, length, sample_rate) for p in (song.mix, *song.stems)])


class AudioChunks(Dataset):
    """`train` mode: each item decodes just the samples of a random T-frame crop of one chunk -> [S+1, 2, F, T]."""

    def __init__(self, songs: list[Song], cfg: SpleeterConfig):
        self.songs, self.cfg = songs, cfg
        self.items = [
            (i, round(s * cfg.sample_rate))
            for i, song in enumerate(songs)
            for s in chunk_starts(song.duration, cfg.chunk_duration, cfg.margin, cfg.n_chunks_per_song)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        cfg = self.cfg
        song_index, chunk_start = self.items[index]
        offset = int(torch.randint(0, cfg.chunk_frames - cfg.T + 1, ()))  # same crop for mixture and stems
        length = (cfg.T - 1) * cfg.frame_step + cfg.frame_length
        audio = load_sources(self.songs[song_index], chunk_start + offset * cfg.frame_step, length, cfg.sample_rate)
        return magnitude(torch.from_numpy(audio), cfg.frame_length, cfg.frame_step, cfg.F)  # [S+1, 2, F, T]


class CachedChunks(Dataset):
    """`process_data` mode: random T-frame crops out of the cached chunk spectrograms -> [S+1, 2, F, T]."""

    def __init__(self, folder: Path, T: int):
        self.specs = np.load(folder / "specs.npy", mmap_mode="r")  # [items, S+1, 2, F, chunk_frames] float16
        self.T = T

    def __len__(self) -> int:
        return self.specs.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        offset = int(torch.randint(0, self.specs.shape[-1] - self.T + 1, ()))
        return torch.from_numpy(self.specs[index, ..., offset : offset + self.T].astype(np.float32))


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch from (seed, epoch), sharded over ranks, that can skip already-trained items.

    Deterministic order is what lets a run cancelled mid-epoch resume at the next unseen batch instead of
    replaying the epoch.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        per_rank = self.n // self.world_size  # equal shards keep DDP ranks in step; the remainder is dropped
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip :])

    def __len__(self) -> int:
        return max(0, self.n // self.world_size - self.skip)


def worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers share the machine's cores with the training process


# -- process_data cache ------------------------------------------------------------------------------------------


def cache_key(songs: list[Song], cfg: SpleeterConfig) -> str:
    """Hash of everything a cached spectrogram depends on: the files (path, size, mtime) and STFT/chunk settings."""
    files = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for s in songs for p in (s.mix, *s.stems)]
    settings = [cfg.sample_rate, cfg.frame_length, cfg.frame_step, cfg.F, cfg.chunk_duration, cfg.margin,
                cfg.n_chunks_per_song, cfg.stems]
    blob = json.dumps({"files": files, "settings": settings, "version": 1}).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def build_cache(
    songs: list[Song], cfg: SpleeterConfig, root: Path, report: Callable[[int, int], None]
) -> tuple[Path, bool]:
    """Compute every chunk's spectrogram once into root/spectrograms/<key>; returns (folder, reused).

    Built in a temporary folder and renamed into place, so a cancelled build never leaves a half cache that a
    later run would trust. `report(done_songs, total_songs)` drives the dashboard's progress.
    """
    folder = root / "spectrograms" / cache_key(songs, cfg)
    if (folder / "specs.npy").is_file():
        return folder, True
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_chunks, frames = cfg.n_chunks_per_song, cfg.chunk_frames
    shape = (len(songs) * n_chunks, 1 + len(cfg.stem_names), 2, cfg.F, frames)
    specs = np.lib.format.open_memmap(tmp / "specs.npy", mode="w+", dtype=np.float16, shape=shape)
    length = round(cfg.chunk_duration * cfg.sample_rate)
    index = []
    try:
        for i, song in enumerate(songs):
            report(i, len(songs))
            starts = chunk_starts(song.duration, cfg.chunk_duration, cfg.margin, n_chunks)
            for k, start in enumerate(starts):
                audio = load_sources(song, round(start * cfg.sample_rate), length, cfg.sample_rate)
                mag = magnitude(torch.from_numpy(audio), cfg.frame_length, cfg.frame_step, cfg.F)
                specs[i * n_chunks + k] = mag.numpy().astype(np.float16)  # |X| <= L/2 for |x| <= 1: fits float16
                index.append({"song": song.name, "start": start})
        specs.flush()
        del specs
        (tmp / "index.json").write_text(json.dumps({"shape": shape, "chunks": index}))
        report(len(songs), len(songs))
        try:
            tmp.rename(folder)
        except OSError:  # another run finished the same cache first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder, False


def cache_bytes(n_songs: int, cfg: SpleeterConfig) -> int:
    return n_songs * cfg.n_chunks_per_song * (1 + len(cfg.stem_names)) * 2 * cfg.F * cfg.chunk_frames * 2


# -- where the songs come from ------------------------------------------------------------------------------------

SYNTH_VERSION = 1  # bump when the generator changes, so shared caches of old songs are not reused


def cache_root(cfg: SpleeterConfig) -> Path:
    """Shared cache for generated songs and spectrograms (same place for every run on this WORKBENCH_HOME)."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    return get_settings().home_dir / "cache" / "spleeter"


def synthetic_manifests(cfg: SpleeterConfig, root: Path, report: Callable[[int, int], None]) -> tuple[Path, Path]:
    """Generate (once, shared by runs) the configured synthetic songs; returns (train, valid) manifest paths."""
    from workbench.tasks.spleeter.synth import write_song

    syn = cfg.synthetic
    four = cfg.stems == 4
    blob = json.dumps([SYNTH_VERSION, syn.seed, syn.songs, syn.valid_songs, syn.duration, cfg.sample_rate, four])
    folder = root / "songs" / f"synth-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"
    manifests = (folder / "train" / "manifest.csv", folder / "valid" / "manifest.csv")
    if all(m.is_file() for m in manifests):
        return manifests
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    total, done = syn.songs + syn.valid_songs, 0
    try:
        for split, count, stream in (("train", syn.songs, 0), ("valid", syn.valid_songs, 1)):
            for i in range(count):
                report(done, total)
                write_song(tmp / split / f"song_{i:04d}", [syn.seed, stream, i], syn.duration, cfg.sample_rate, four)
                done += 1
            write_manifest(tmp / split, tmp / split / "manifest.csv", cfg.stem_names)
        report(total, total)
        try:
            tmp.rename(folder)
        except OSError:  # a concurrent run generated the same songs first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifests


def manifest_path(value: str, dataset_dir: Path) -> Path:
    p = Path(value)
    return p if p.is_absolute() or p.is_file() else dataset_dir / p


def prepare_songs(
    cfg: SpleeterConfig, root: Path, report: Callable[[int, int], None]
) -> tuple[list[Song], list[Song], list[str]]:
    """Training and validation songs, checked before training: (train, valid, warnings); DataError on problems."""
    if cfg.train_manifest:
        train_dir = Path(cfg.train_dataset)
        train_manifest = manifest_path(cfg.train_manifest, train_dir)
    else:
        train_manifest, valid_synth = synthetic_manifests(cfg, root, report)
        train_dir = train_manifest.parent
    train, warnings = check_songs(read_manifest(train_manifest, train_dir, cfg.stem_names), train_manifest, cfg)
    if not cfg.train_manifest:
        valid, more = check_songs(
            read_manifest(valid_synth, valid_synth.parent, cfg.stem_names), valid_synth, cfg, for_training=False
        )
    elif cfg.valid_manifest:
        valid_dir = Path(cfg.valid_dataset or cfg.train_dataset)
        valid_manifest = manifest_path(cfg.valid_manifest, valid_dir)
        valid, more = check_songs(
            read_manifest(valid_manifest, valid_dir, cfg.stem_names), valid_manifest, cfg, for_training=False
        )
    else:  # hold out 1 - train_ratio of the training songs, the same ones for every run with this seed
        if len(train) < 2:
            raise DataError(["need at least 2 songs to split off validation songs (or set valid_manifest)"])
        order = np.random.default_rng(cfg.seed).permutation(len(train))
        n_valid = min(len(train) - 1, max(1, round(len(train) * (1 - cfg.train_ratio))))
        valid = [train[i] for i in sorted(order[:n_valid])]
        train = [train[i] for i in sorted(order[n_valid:])]
        more = []
    return train, valid, warnings + more

