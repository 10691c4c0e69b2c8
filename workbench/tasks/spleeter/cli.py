"""`workbench data synth-songs` and `workbench data manifest`: data for the spleeter task without a download.

Plain functions with typer-annotated parameters; the platform mounts them under `workbench data <name>`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from workbench.tasks.spleeter.config import STEM_NAMES
from workbench.tasks.spleeter.data import write_manifest
from workbench.tasks.spleeter.synth import write_song


def synth_songs(
    out: Annotated[Path, typer.Argument(help="Folder to write one sub-folder per song into (created if missing).")],
    songs: Annotated[int, typer.Option(help="Number of songs to generate.", min=1)] = 10,
    duration: Annotated[float, typer.Option(help="Length of each song in seconds (>= chunk_duration + 2*margin).")] = 25.0,
    sample_rate: Annotated[int, typer.Option(help="Sample rate in Hz (match the config's sample_rate).")] = 44100,
    seed: Annotated[int, typer.Option(help="Generator seed; the same seed gives the same songs.")] = 0,
    four_stems: Annotated[bool, typer.Option(help="Also write drums.wav, bass.wav and other.wav (stems: 4).")] = False,
) -> None:
    """Generate spleeter training songs (mixture = vocals + instrumental exactly) and their manifest.csv."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i in range(songs):
        folder = write_song(out / f"song_{i:04d}", [seed, 0, i], duration, sample_rate, four_stems)
        typer.echo(f"[{i + 1}/{songs}] {folder}")
    # with --four-stems the manifest names all five stem columns, so it serves `stems: 2` and `stems: 4` alike
    columns = ("vocals", "accompaniment", "drums", "bass", "other") if four_stems else STEM_NAMES[2]
    count, skipped = write_manifest(out, out / "manifest.csv", columns)
    for reason in skipped:
        typer.echo(f"skipped {reason}", err=True)
    typer.echo(f"{count} songs and {out / 'manifest.csv'} written in {time.perf_counter() - start:.1f} s")
    typer.echo(f"train on them with: train_dataset: {out}  train_manifest: manifest.csv  sample_rate: {sample_rate}")


def manifest(
    folder: Annotated[Path, typer.Argument(help="Data folder with one sub-folder per song.")],
    out: Annotated[Path | None, typer.Option(help="Manifest file to write (default: FOLDER/manifest.csv).")] = None,
    stems: Annotated[int, typer.Option(help="2 (vocals/instrumental) or 4 (vocals/drums/bass/other).")] = 2,
) -> None:
    """Build the spleeter manifest CSV of a folder with one sub-folder per song.

    Files are matched by name: *mix*, *vocal*, *instru* (or *accomp*), and with --stems 4 also *drum*, *bass*,
    *other*. Paths are written relative to FOLDER (use FOLDER as train_dataset)."""
    if stems not in STEM_NAMES:
        raise typer.BadParameter("--stems must be 2 or 4")
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder")
    target = out or folder / "manifest.csv"
    count, skipped = write_manifest(folder, target, STEM_NAMES[stems])
    for reason in skipped:
        typer.echo(f"skipped {reason}", err=True)
    typer.echo(f"{count} songs written to {target}")
    if count == 0:
        raise typer.Exit(1)
