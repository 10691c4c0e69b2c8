"""A synthetic click stream with a known answer: `workbench data synth-ctr OUT`, and the quick preset's data.

The hidden model, per impression:
    logit = bias + sum over slots of w(slot, feature)                     (a linear part)
                 + sum over a few slot pairs of <u(slot1, f1), u(slot2, f2)>  (interactions a linear model misses)
    click ~ Bernoulli(sigmoid(logit))
- Features of a slot are drawn Zipf-distributed from its vocabulary (sizes log-uniform in min_vocab_size..vocab_size); some slots
  hold several features per impression (their terms add up), and a slot can be missing.
- Features appear and die: each day, a share `churn_per_day` of each slot's features gets a new id and new weights,
  so old ids stop occurring (eviction matters) and new ones start cold (admission matters).
- Every weight and id is a hash of (seed, slot, feature, generation), so any slice can be produced on its own.
- Next to each slice's data, `_truth.npz` holds every line's true click probability and its sampled click; the
  root's `_synth.json` holds the settings and, per day, the CTR and the Bayes-optimal AUC (the AUC of the true
  probabilities on the sampled clicks: what a perfect model would score).
Files whose names start with "_" are not data to the reader. The donefile of a slice is written last.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workbench.tasks.ctr_stream.config_parts import SyntheticStream
from workbench.tasks.ctr_stream.data import pass_intervals
from workbench.tasks.ctr_stream.index import mix64
from workbench.tasks.ctr_stream.metrics import exact_auc
from workbench.tasks.ctr_stream.slots import render_slot_lines

LATENT_DIM = 4
LINEAR_STD = 1.2  # std of the linear part of the logit over impressions (calibrated on a sample)
INTERACTION_STD = 0.8  # std of the interaction part
CALIBRATION_SIZE = 20000


def _hash(*parts: np.ndarray | int) -> np.ndarray:
    """Deterministic uint64 hash of integer arrays/scalars (broadcast), by chained splitmix64."""
    h = np.zeros(np.broadcast(*[np.asarray(p) for p in parts]).shape, dtype=np.uint64)
    for i, p in enumerate(parts):
        h = mix64(h ^ (np.asarray(p).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15 * (i + 1) % 2**64)))
    return h


def _uniform(h: np.ndarray) -> np.ndarray:
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def _normal(*parts: np.ndarray | int) -> np.ndarray:
    """Standard normal values hashed from `parts` (Box-Muller on two hashed uniforms)."""
    u1 = _uniform(_hash(*parts, 1))
    u2 = _uniform(_hash(*parts, 2))
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)


class HiddenModel:
    """The generator's ground truth for a list of slots."""

    def __init__(self, slots: list[int], settings: SyntheticStream):
        self.slots = slots
        self.s = settings
        seed = settings.seed
        n = len(slots)
        rng = np.random.default_rng(seed)
        self.vocab = np.exp(rng.uniform(np.log(settings.min_vocab_size), np.log(settings.vocab_size), n)).astype(np.int64)
        self.multi = rng.random(n) < settings.multi_value_share
        self.slot_scale = rng.uniform(0.3, 1.0, n)
        self.cdf = []
        for v in self.vocab:
            p = 1.0 / np.arange(1, v + 1) ** settings.zipf_exponent
            self.cdf.append(np.cumsum(p) / p.sum())
        # interactions join the smaller slots (think device x ad category): frequent enough pairs to be learnable
        small = np.argsort(self.vocab, kind="stable")[: max(2, min(n, 2 * settings.interactions))]
        self.pairs = [tuple(sorted(rng.choice(small, 2, replace=False).tolist())) for _ in range(settings.interactions)] if n > 1 else []
        self.linear_scale = 1.0
        self.interaction_scale = 1.0
        self.bias = 0.0
        self._calibrate()

    def _calibrate(self) -> None:
        """Scale both parts to their target std and pick the bias that gives base_ctr, on a fixed sample."""
        sample = self.impressions(day_index=0, count=CALIBRATION_SIZE, rng=np.random.default_rng(self.s.seed + 1))
        lin, inter = sample["linear"], sample["interaction"]
        self.linear_scale = LINEAR_STD / max(lin.std(), 1e-9)
        self.interaction_scale = INTERACTION_STD / max(inter.std(), 1e-9) if self.pairs else 0.0
        z = lin * self.linear_scale + inter * self.interaction_scale
        lo, hi = -20.0, 20.0
        for _ in range(60):  # bisection: mean sigmoid(bias + z) = base_ctr
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(mid + z)))) < self.s.base_ctr else (lo, mid)
        self.bias = (lo + hi) / 2

    def generation(self, slot_index: int, feature: np.ndarray, day_index: int) -> np.ndarray:
        phase = _uniform(_hash(self.s.seed, slot_index, feature, 77))
        return np.floor(day_index * self.s.churn_per_day + phase).astype(np.int64)

    def impressions(self, day_index: int, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """`count` impressions of a day: CSR feature ids/slots, true probabilities and sampled clicks."""
        s = self.s
        linear = np.zeros(count)
        latent: dict[int, np.ndarray] = {}
        slot_keys, slot_rows = [], []
        for i, slot in enumerate(self.slots):
            present = rng.random(count) >= s.missing_rate
            per = np.where(present, 1 + (rng.poisson(1.0, count) if self.multi[i] else 0), 0)
            row = np.repeat(np.arange(count), per)
            feature = np.searchsorted(self.cdf[i], rng.random(row.size))
            gen = self.generation(i, feature, day_index)
            rank_scale = (feature + 1.0) ** -s.rank_weight_exponent  # feature = popularity rank - 1
            weight = self.slot_scale[i] * rank_scale * _normal(s.seed, i, feature, gen, 11)
            linear += np.bincount(row, weights=weight, minlength=count)  # several features in a slot: summed
            if any(i in pair for pair in self.pairs):
                u = rank_scale[:, None] * np.stack([_normal(s.seed, i, feature, gen, 100 + k) for k in range(LATENT_DIM)], axis=1)
                latent[i] = np.stack([np.bincount(row, weights=u[:, k], minlength=count) for k in range(LATENT_DIM)], axis=1)
            keys = _hash(s.seed, i, feature, gen, 5)
            keys[keys == 0] = 1  # feasign 0 is padding
            slot_keys.append(keys)
            slot_rows.append(row)
        interaction = np.zeros(count)
        for a, b in self.pairs:
            interaction += (latent[a] * latent[b]).sum(axis=1)
        prob = 1 / (1 + np.exp(-(self.bias + linear * self.linear_scale + interaction * self.interaction_scale)))
        rows = np.concatenate(slot_rows)
        order = np.argsort(rows, kind="stable")  # group tokens by impression, slots in order
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=count), out=offsets[1:])
        slot_ids = np.concatenate([np.full(r.size, slot) for r, slot in zip(slot_rows, self.slots)])
        return {"keys": np.concatenate(slot_keys)[order], "slots": slot_ids[order], "offsets": offsets, "prob": prob,
                "click": (rng.random(count) < prob).astype(np.float32), "linear": linear, "interaction": interaction}


def generate_stream(
    out: Path,
    *,
    slots: list[int],
    days: list[str],
    split_interval: int,
    settings: SyntheticStream,
    donefile: str = "data.done",
    hourly: bool = False,
    live_seconds: float = 0.0,
    on_slice: Callable[[str], None] | None = None,
    first_day: str | None = None,
) -> dict[str, Any]:
    """Write the stream to out/YYYYMMDD/HHMM/part-00000 (+ _truth.npz, + donefile last). Returns the summary that
    is also written to out/_synth.json. With live_seconds > 0, sleeps that long before each slice after the first.
    `first_day` (default: the first of `days`) is the stream's day 0, from which the features' churn counts: a
    later day generated alone is the same as in the whole stream."""
    out.mkdir(parents=True, exist_ok=True)
    model = HiddenModel(slots, settings)
    folders = [f for group in pass_intervals(split_interval, 1, hourly) for f in group]
    summary: dict[str, Any] = {"settings": settings.model_dump(), "slots": slots, "split_interval": split_interval,
                               "hourly": hourly, "donefile": donefile, "days": {}}
    day_zero = dt.datetime.strptime(first_day or days[0], "%Y%m%d").date()
    wrote_one = False
    for day in days:
        day_index = (dt.datetime.strptime(day, "%Y%m%d").date() - day_zero).days
        probs, clicks = [], []
        for j, folder in enumerate(folders):
            if live_seconds > 0 and wrote_one:
                time.sleep(live_seconds)
            rng = np.random.default_rng([settings.seed, day_index, j])
            imp = model.impressions(day_index, settings.examples_per_slice, rng)
            write_slice(out / day / folder, imp, day, j, settings.ins_id, donefile)
            probs.append(imp["prob"])
            clicks.append(imp["click"])
            wrote_one = True
            if on_slice is not None:
                on_slice(f"{day}/{folder}")
        p, y = np.concatenate(probs), np.concatenate(clicks)
        summary["days"][day] = {"impressions": int(p.size), "ctr": float(y.mean()), "mean_prob": float(p.mean()),
                                "bayes_auc": exact_auc(p, y)}
        _write_json(out / "_synth.json", summary)
    return summary


def write_slice(folder: Path, imp: dict[str, np.ndarray], day: str, slice_index: int, ins_id: bool, donefile: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    count = imp["prob"].size
    ids = (int(day) * 10**11 + slice_index * 10**7 + np.arange(count)).astype(np.uint64) if ins_id else None
    text = render_slot_lines(imp["click"], imp["offsets"], imp["keys"], imp["slots"], ids)
    tmp = folder / ".part-00000.tmp"
    tmp.write_bytes(text)
    os.replace(tmp, folder / "part-00000")
    np.savez(folder / "_truth.npz", prob=imp["prob"].astype(np.float32), click=imp["click"])
    if donefile:
        (folder / donefile).touch()


def read_summary(root: Path) -> dict[str, Any] | None:
    path = root / "_synth.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
