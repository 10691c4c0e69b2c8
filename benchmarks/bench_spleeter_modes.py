"""Epoch time in `process_data` mode against `train` mode on the same songs (seed 003: process_data removes the IO
bottleneck). Measured side by side in one process, each twice in alternation, best of two:

- data only: one pass of the DataLoader (decoding + STFT, or copying cached crops), no network;
- full epoch: the same pass plus the U-Net training steps (what a user waits for);
- the port's way of reading (decode the whole chunk_duration chunk, STFT it, then crop T frames), for reference:
  this task's `train` mode decodes only the samples of the crop, which already removes most of that cost.

    .venv/bin/python benchmarks/bench_spleeter_modes.py [--songs 8] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from workbench.config.io import load_config_file
from workbench.tasks.spleeter.audio import magnitude
from workbench.tasks.spleeter.config import SpleeterConfig
from workbench.tasks.spleeter.data import (
    AudioChunks,
    CachedChunks,
    EpochSampler,
    build_cache,
    load_sources,
    prepare_songs,
    worker_init,
)
from workbench.tasks.spleeter.train import _loss, _setup_model, _setup_optimizer

ROOT = Path(__file__).resolve().parents[1]


class PortStyleChunks(AudioChunks):
    """The PyTorch port's item: load the whole chunk, STFT all of it, then crop T frames."""

    def __getitem__(self, index: int) -> torch.Tensor:
        cfg = self.cfg
        song_index, chunk_start = self.items[index]
        audio = load_sources(self.songs[song_index], chunk_start, round(cfg.chunk_duration * cfg.sample_rate),
                             cfg.sample_rate)
        mag = magnitude(torch.from_numpy(audio), cfg.frame_length, cfg.frame_step, cfg.F)
        offset = int(torch.randint(0, mag.shape[-1] - cfg.T + 1, ()))
        return mag[..., offset : offset + cfg.T]


def epoch_seconds(dataset: Dataset, cfg: SpleeterConfig, workers: int, train: bool) -> float:
    sampler = EpochSampler(len(dataset), cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.train_batch_size, sampler=sampler, num_workers=workers,
                        worker_init_fn=worker_init)
    model, net = _setup_model(cfg, torch.device("cpu"))
    opt = _setup_optimizer(cfg, model)
    start = time.perf_counter()
    for batch in loader:
        if train:
            loss = _loss(cfg, net(batch[:, 0]), batch[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "spleeter" / "default.yaml"))
    parser.add_argument("--songs", type=int, default=8)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(2)
    cfg = load_config_file(args.config, [f"cache_dir={ROOT / '.bench' / 'spleeter-cache'}",
                                         f"synthetic.songs={args.songs}", "synthetic.valid_songs=1", *args.set])
    t = time.perf_counter()
    train_songs, _, _ = prepare_songs(cfg, Path(cfg.cache_dir), lambda d, n: None)
    print(f"{len(train_songs)} songs ready in {time.perf_counter() - t:.1f} s "
          f"({cfg.sample_rate} Hz, F={cfg.F}, T={cfg.T}, {cfg.n_chunks_per_song} chunks/song, batch {cfg.train_batch_size})")
    t = time.perf_counter()
    folder, reused = build_cache(train_songs, cfg, Path(cfg.cache_dir), lambda d, n: None)
    print(f"process_data cache {'reused' if reused else 'built'} in {time.perf_counter() - t:.1f} s (one-off)")
    variants = {
        "train mode, 0 workers": (AudioChunks(train_songs, cfg), 0),
        f"train mode, {cfg.num_workers} workers": (AudioChunks(train_songs, cfg), cfg.num_workers),
        "port-style full-chunk decode, 0 workers": (PortStyleChunks(train_songs, cfg), 0),
        "process_data (cached)": (CachedChunks(folder, cfg.T), 0),
    }
    for train in (False, True):
        title = "full epoch (data + training steps)" if train else "data only (one DataLoader pass)"
        times: dict[str, float] = {}
        for _ in range(2):
            for name, (dataset, workers) in variants.items():
                if train and name.startswith("port"):
                    continue
                seconds = epoch_seconds(dataset, cfg, workers, train)
                times[name] = min(times.get(name, float("inf")), seconds)
        base = times["process_data (cached)"]
        print(f"\n{title}, {len(variants['process_data (cached)'][0])} items:")
        for name, seconds in times.items():
            print(f"  {name:42s} {seconds:8.2f} s   {seconds / base:6.2f}x process_data")


if __name__ == "__main__":
    main()
