"""ctr_stream sparse table memory and speed at millions of features.

    .venv/bin/python benchmarks/bench_ctr_memory.py [--features 2000000]

Fills a SparseTable with random 64-bit feasigns through ordinary merged pushes of 20k keys (the way training
does), then reports bytes held per stored feature (columns at capacity + mf pool + hash index) against the raw
payload PaddleRec stores per feature (8-byte key + one float per value: slot, unseen_days, delta_score, show,
click, embed_w, embed_g2sum, and embedx_w[8] + embedx_g2sum once extended), plus lookup/push/shrink speed.
Two tables: embedx_threshold 10 (PaddleRec's config: most features never extended) and 0 (all extended).
Target: <= 1.5x the raw payload.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.table import SparseTable

CHUNK = 20_000


def fill(threshold: float, features: int, seed: int = 0) -> tuple[SparseTable, float]:
    t = SparseTable(CtrStreamConfig(embedx_threshold=threshold), seed=seed)
    rng = np.random.default_rng(seed)
    keys = rng.integers(1, 2**64 - 1, features, dtype=np.uint64, endpoint=True)
    # shows per key: mostly 1, a Zipf-ish head with many, so that threshold 10 extends only the popular ones
    shows = np.minimum(rng.zipf(1.6, features), 1000).astype(np.float32)
    grad = np.zeros((CHUNK, 1 + t.embedx_dim), np.float32)
    t0 = time.perf_counter()
    for lo in range(0, features, CHUNK):
        k = np.unique(keys[lo : lo + CHUNK])
        n = k.size
        t.push(k, t.lookup(k), np.full(n, 2, np.uint16), shows[lo : lo + n], np.zeros(n, np.float32), grad[:n])
    return t, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=2_000_000)
    args = parser.parse_args()
    for threshold in (10.0, 0.0):
        t, fill_s = fill(threshold, args.features)
        probe = t.keys[np.random.default_rng(1).integers(0, t.n, 1_000_000)]
        t0 = time.perf_counter()
        rows = t.lookup(probe)
        lookup_s = time.perf_counter() - t0
        assert (t.keys[rows] == probe).all()
        held, raw, n, extended = t.memory_bytes(), t.raw_payload_bytes(), t.n, t.mf_n / t.n
        t.unseen_days[: t.n // 3] = 40  # a third unseen for longer than delete_after_unseen_days (30)
        t0 = time.perf_counter()
        deleted = t.shrink()
        shrink_s = time.perf_counter() - t0
        print(f"embedx_threshold {threshold:>4}: {n:,} features ({extended:.0%} with embedx), {held / n:.1f} bytes/feature "
              f"held vs {raw / n:.1f} raw payload = {held / raw:.2f}x (target <= 1.5x); {held / 2**20:.0f} MiB")
        print(f"    push {n / fill_s / 1e6:.2f} M new keys/s, lookup {1e6 / lookup_s / 1e6:.2f} M keys/s, "
              f"shrink deleting {deleted:,} in {shrink_s:.2f} s; after shrink {t.memory_bytes() / t.raw_payload_bytes():.2f}x")


if __name__ == "__main__":
    main()
