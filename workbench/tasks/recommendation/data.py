"""Session data as tensors: loading (with a fingerprinted cache), batches, and seen-item masks.

`load_session_data(cfg.data)` reads the configured source (sources.py), runs the preprocessing pipeline
(pipeline.py) and keeps the result in `$WORKBENCH_HOME/cache/recommendation/<fingerprint>.pt`. The fingerprint
covers the file (resolved path, size, mtime), the settings that change the result, and `FORMAT_VERSION`, so a
changed file or setting rebuilds and an unchanged one loads in milliseconds.

A batch is gathered on the fly from one flat click array: for target click j with prefix length n, the input is
items[j - min(n, maxlen) : j], right-padded with 0 (RecBole's layout: the last click sits at index len-1).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.tasks.recommendation.config import RecommendationData
from workbench.tasks.recommendation.pipeline import SPLITS, PreparedSessions, prepare_sessions
from workbench.tasks.recommendation.sources import generate_sessions, read_atomic, read_diginetica

FORMAT_VERSION = 2  # bump when the pipeline's output changes for the same input and settings


@dataclass
class SessionBatch:
    user: torch.Tensor  # [B] session (or user) id
    item_seq: torch.Tensor  # [B, L] item ids, right-padded with 0
    item_len: torch.Tensor  # [B] number of real items in item_seq (>= 1)
    target: torch.Tensor  # [B] the next item
    neg_items: torch.Tensor | None = None  # [B, N] sampled negatives (loss_type BPR only)

    def to(self, device: torch.device) -> SessionBatch:
        if device.type == "cpu":
            return self
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return SessionBatch(**{k: v.to(device, non_blocking=True) if v is not None else None for k, v in moved.items()})

    def __len__(self) -> int:
        return len(self.target)


@dataclass
class Samples:
    target_index: torch.Tensor  # int64 [N]: flat click index of each sample's target
    length: torch.Tensor  # int64 [N]: clicks before the target in its session (untruncated)
    user: torch.Tensor  # int64 [N]: session id

    def __len__(self) -> int:
        return len(self.target_index)


@dataclass
class SessionData:
    items: torch.Tensor  # int64 [n_clicks]
    offsets: torch.Tensor  # int64 [n_sessions + 1]
    train_end: torch.Tensor  # int64 [n_sessions]
    splits: dict[str, Samples]
    n_items: int  # including PAD 0
    item_tokens: list[str]
    fingerprint: str
    maxlen: int
    stats: dict[str, int]

    @property
    def item_vocab(self) -> str:
        """Hash of the item tokens in id order: checkpoints only fit data with the same vocabulary."""
        return hashlib.sha256("\n".join(self.item_tokens).encode()).hexdigest()[:20]

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    def batch(self, split: str, idx: torch.Tensor) -> SessionBatch:
        """Gather the samples `idx` (positions in the split) into padded model inputs."""
        s = self.splits[split]
        target_index = s.target_index[idx]  # [B]
        length = s.length[idx].clamp(max=self.maxlen)  # [B]
        offs = torch.arange(self.maxlen)  # [L]
        where = (target_index - length).unsqueeze(1) + offs  # [B, L] flat index of each input click
        real = offs < length.unsqueeze(1)  # [B, L]
        seq = torch.where(real, self.items[where.clamp(max=len(self.items) - 1)], 0)
        return SessionBatch(user=s.user[idx], item_seq=seq, item_len=length, target=self.items[target_index])

    def train_item_counts(self) -> torch.Tensor:
        """[n_items] float: how often each item occurs among training interactions (popularity)."""
        lengths = self.train_end - self.offsets[:-1]
        start = torch.repeat_interleave(self.offsets[:-1], lengths)
        within = torch.arange(len(start)) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        train_items = self.items[start + within]
        return torch.bincount(train_items, minlength=self.n_items).float()

    def seen_items(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, item) pairs of the training interactions of `users` [B], for masking seen items in a ranking."""
        start = self.offsets[users]
        lengths = self.train_end[users] - start
        rows = torch.repeat_interleave(torch.arange(len(users)), lengths)
        within = torch.arange(len(rows)) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        return rows, self.items[torch.repeat_interleave(start, lengths) + within]


def load_session_data(cfg: RecommendationData, log: Callable[[str], None] | None = None) -> SessionData:
    """Load the configured sessions, from the cache when the fingerprint matches."""
    fingerprint = data_fingerprint(cfg)
    cache_file = cache_dir() / f"{fingerprint}.pt"
    if cfg.cache and cache_file.is_file():
        try:
            state = torch.load(cache_file, map_location="cpu", weights_only=True)
            if log:
                log(f"loaded preprocessed sessions from cache {cache_file}")
            return _from_state(state, fingerprint, cfg.maxlen)
        except Exception as exc:  # a truncated or stale cache file is rebuilt, never fatal
            if log:
                log(f"ignoring unreadable cache file {cache_file}: {exc}")
    prepared = prepare_sessions(
        read_clicks(cfg),
        min_item_count=cfg.min_item_count,
        split=cfg.split,
        valid_days=cfg.valid_days,
        test_days=cfg.test_days,
    )
    state = _to_state(prepared)
    if cfg.cache:
        _atomic_save(state, cache_file)
        if log:
            log(f"cached preprocessed sessions in {cache_file}")
    return _from_state(state, fingerprint, cfg.maxlen)


def read_clicks(cfg: RecommendationData) -> pd.DataFrame:
    if cfg.source == "synthetic":
        return generate_sessions(cfg.synthetic)
    if cfg.source == "atomic":
        return read_atomic(cfg.path)
    return read_diginetica(cfg.path)


def cache_dir() -> Path:
    """`$WORKBENCH_HOME/cache/recommendation` (WORKBENCH_HOME defaults to ./.workbench)."""
    home = Path(os.environ.get("WORKBENCH_HOME") or ".workbench").expanduser()
    return home / "cache" / "recommendation"


def data_fingerprint(cfg: RecommendationData) -> str:
    """Hash of everything the preprocessed tensors depend on. `maxlen` is applied per batch, so it is not in it."""
    key: dict[str, object] = {
        "version": FORMAT_VERSION,
        "source": cfg.source,
        "min_item_count": cfg.min_item_count,
        "split": cfg.split,
    }
    if cfg.split == "time":
        key.update(valid_days=cfg.valid_days, test_days=cfg.test_days)
    if cfg.source == "synthetic":
        key["synthetic"] = cfg.synthetic.model_dump()
    else:
        path = Path(cfg.path).expanduser().resolve()
        # size + mtime instead of hashing contents: a 1 GB click log would otherwise be read twice per run
        stat = path.stat() if path.is_file() else None  # a missing file fails later, in the reader, with its path
        key["file"] = {"path": str(path), "size": stat and stat.st_size, "mtime_ns": stat and stat.st_mtime_ns}
    blob = json.dumps(key, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _to_state(p: PreparedSessions) -> dict[str, object]:
    """Plain tensors and Python values only, so the cache loads with torch.load(weights_only=True)."""
    return {
        "items": torch.from_numpy(p.items.astype(np.int64)),
        "offsets": torch.from_numpy(p.offsets),
        "train_end": torch.from_numpy(p.train_end.astype(np.int64)),
        "targets": {name: torch.from_numpy(p.targets[name]) for name in SPLITS},
        "n_items": p.n_items,
        "item_tokens": p.item_tokens,
        "stats": {k: int(v) for k, v in p.stats.items()},
    }


def _from_state(state: dict, fingerprint: str, maxlen: int) -> SessionData:
    offsets = state["offsets"]
    splits = {}
    for name, target_index in state["targets"].items():
        user = torch.searchsorted(offsets, target_index, right=True) - 1
        splits[name] = Samples(target_index=target_index, length=target_index - offsets[user], user=user)
    return SessionData(
        items=state["items"],
        offsets=offsets,
        train_end=state["train_end"],
        splits=splits,
        n_items=int(state["n_items"]),
        item_tokens=list(state["item_tokens"]),
        fingerprint=fingerprint,
        maxlen=maxlen,
        stats=dict(state["stats"]),
    )


def _atomic_save(state: dict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # pid: two runs may build the same cache at once
    try:
        torch.save(state, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
