"""What process_data leaves for fast_train: the spectrogram cache it filled and the validation excerpts as tensors.

process_data records its output under a key of the config's data and fixed settings (`processed_folder`), so a
fast_train run with the same settings finds it from its config alone, without opening a song; `processed_data` may
name the folder instead. Everything fast_train reads is here: it never calls the manifest or audio readers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.tasks.spleeter.config import SpleeterConfig
from workbench.tasks.spleeter.data import DataError, Song, load_sources, manifest_path


# The settings the saved tensors are made with: process_data fixes them (the batch size, T, epochs, the optimizer and
# the model stay free). fast_train names every one that differs from what the tensors were made with.
FIXED_BY_PROCESS_DATA = ("stems", "sample_rate", "frame_length", "frame_step", "F", "chunk_duration", "margin",
                         "n_chunks_per_song", "valid_max_duration")
PROCESSED_FILE = "processed.json"


@dataclass(frozen=True)
class SavedExcerpt:
    """A validation song's excerpt as process_data saved it: float32 [S+1, 2, N] (mixture first) in a .npy file."""

    name: str
    path: Path


def valid_excerpt(song: Song | SavedExcerpt, cfg: SpleeterConfig) -> np.ndarray:
    """The centre `valid_max_duration` seconds of a validation song (all of it for 0): float32 [S+1, 2, N]."""
    if isinstance(song, SavedExcerpt):
        return np.load(song.path)
    seconds = song.duration if cfg.valid_max_duration == 0 else min(song.duration, cfg.valid_max_duration)
    start = round((song.duration - seconds) / 2 * cfg.sample_rate)
    return load_sources(song, start, round(seconds * cfg.sample_rate), cfg.sample_rate)


def data_identity(cfg: SpleeterConfig) -> dict[str, object]:
    """Which songs the config trains and validates on, from the config alone (no file is opened)."""
    if not cfg.train_manifest:
        return {"synthetic": cfg.synthetic.model_dump(mode="json")}
    train_dir = Path(cfg.train_dataset)
    out: dict[str, object] = {"train": str(manifest_path(cfg.train_manifest, train_dir).resolve()),
                              "train_dataset": str(train_dir.resolve())}
    if cfg.valid_manifest:
        valid_dir = Path(cfg.valid_dataset or cfg.train_dataset)
        out |= {"valid": str(manifest_path(cfg.valid_manifest, valid_dir).resolve()),
                "valid_dataset": str(valid_dir.resolve())}
    else:  # the held-out songs depend on the seed and the ratio
        out |= {"seed": cfg.seed, "train_ratio": cfg.train_ratio}
    return out


def processed_folder(cfg: SpleeterConfig, root: Path) -> Path:
    """Where process_data leaves its output for this config's data and fixed settings (or `processed_data`)."""
    if cfg.processed_data:
        return Path(cfg.processed_data)
    fixed = {name: getattr(cfg, name) for name in FIXED_BY_PROCESS_DATA}
    blob = json.dumps({"data": data_identity(cfg), "fixed": fixed, "version": 1}, sort_keys=True).encode()
    return root / "processed" / hashlib.sha256(blob).hexdigest()[:20]


def save_processed(cfg: SpleeterConfig, root: Path, spectrograms: Path, valid: list[Song]) -> tuple[Path, list[SavedExcerpt]]:
    """Record process_data's output: the spectrogram cache it filled and the validation excerpts as tensors.

    Written to a temporary folder and renamed into place, so fast_train never reads a half-written output; an
    output already there for the same spectrograms and songs is reused.
    """
    folder = processed_folder(cfg, root)
    names = [s.name for s in valid]
    existing = _read_processed(folder)
    if existing is not None and existing["spectrograms"] == str(spectrograms.resolve()) and \
            [v["name"] for v in existing["valid"]] == names:
        return folder, [SavedExcerpt(v["name"], folder / v["file"]) for v in existing["valid"]]
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "valid").mkdir(parents=True)
    try:
        entries = []
        for i, song in enumerate(valid):
            file = f"valid/{i:04d}.npy"
            np.save(tmp / file, valid_excerpt(song, cfg))
            entries.append({"name": song.name, "file": file})
        record = {"spectrograms": str(spectrograms.resolve()), "fixed": {n: getattr(cfg, n) for n in FIXED_BY_PROCESS_DATA},
                  "data": data_identity(cfg), "valid": entries}
        (tmp / PROCESSED_FILE).write_text(json.dumps(record, indent=1))
        old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
        if folder.exists():
            folder.rename(old)  # made from other files (their mtime changed): replaced, not merged
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder, [SavedExcerpt(e["name"], folder / e["file"]) for e in entries]


def _read_processed(folder: Path) -> dict | None:
    path = folder / PROCESSED_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_processed(cfg: SpleeterConfig, root: Path) -> tuple[Path, list[SavedExcerpt]]:
    """fast_train's data: (spectrogram cache folder, validation excerpts) that a process_data run saved.

    Opens no audio file. Raises DataError naming what is missing, or every fixed setting that differs.
    """
    folder = processed_folder(cfg, root)
    record = _read_processed(folder)
    if record is None:
        how = ("processed_data names no process_data output" if cfg.processed_data else
               "no process_data run has saved tensors for these songs and settings")
        raise DataError([f"fast_train: {how} ({folder / PROCESSED_FILE} is missing). Run once with mode: "
                         f"process_data and the same data settings and {', '.join(FIXED_BY_PROCESS_DATA)}; or "
                         "set processed_data to the folder a process_data run named in its events"])
    problems = [f"{name}: the saved tensors were made with {record['fixed'][name]!r}, this config says "
                f"{getattr(cfg, name)!r} (process_data fixes it; run process_data again to change it)"
                for name in FIXED_BY_PROCESS_DATA if record["fixed"].get(name) != getattr(cfg, name)]
    specs = Path(record["spectrograms"])
    if not (specs / "specs.npy").is_file():
        problems.append(f"the spectrograms {specs} that {folder / PROCESSED_FILE} names are gone (cache deleted?); "
                        "run process_data again")
    if problems:
        raise DataError(problems, f"fast_train from {folder}")
    return specs, [SavedExcerpt(v["name"], folder / v["file"]) for v in record["valid"]]
