"""Criteo TSV (label, 13 integer columns, 26 categorical hex columns) -> the slot format, in time slices.

Slots: the label is slot 1; I1..I13 are slots 2..14; C1..C26 are slots 15..40 (so `slot_num: 39`). A missing value
writes no token (the slot is padded with feasign 0 by the reader). Integers are bucketed the usual way for Criteo
(v > 2: floor(ln(v)^2), else v) and every (slot, value) pair is hashed to a 64-bit feasign. Each `lines_per_slice`
input lines become one folder YYYYMMDD/HHMM (the clock advancing by split_interval), with the donefile written last.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.tasks.ctr_stream.index import mix64
from workbench.tasks.ctr_stream.slots import render_slot_lines

NUM_INT, NUM_CAT = 13, 26
FIRST_SLOT = 2
_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def feasign(slot: int, values: np.ndarray) -> np.ndarray:
    """64-bit feature id of (slot, value): never 0 (0 is padding)."""
    h = mix64(mix64(np.full(values.shape, slot, dtype=np.uint64)) ^ values.astype(np.uint64))
    h[h == 0] = 1
    return h


def bucket_integers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(bucketed value as uint64, present mask) of an integer column with missing values."""
    v = column.to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(v)
    safe = np.where(present, v, 0)
    bucket = np.where(safe > 2, np.floor(np.log(np.maximum(safe, 1)) ** 2), safe)
    # negative values (I2 has some) stay distinct from the positive buckets
    return (bucket.astype(np.int64) + (1 << 40)).astype(np.uint64), present


def parse_hex(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(value as uint64, present mask) of an 8-hex-digit categorical column, vectorised over fixed-width bytes."""
    raw = column.fillna("").to_numpy(dtype="S8")
    digits = _HEX[np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(-1, 8)]  # [N, 8], 255 = not a hex digit
    length = np.char.str_len(raw)
    present = length > 0
    valid = digits != 255
    value = np.zeros(raw.shape[0], dtype=np.uint64)
    for j in range(8):
        use = valid[:, j] & (j < length)
        value = np.where(use, value * np.uint64(16) + digits[:, j].astype(np.uint64), value)
    return value, present


def convert_chunk(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, offsets, keys, slots) of a DataFrame of 40 Criteo columns."""
    n = len(frame)
    keys = np.zeros((n, NUM_INT + NUM_CAT), dtype=np.uint64)
    present = np.zeros((n, NUM_INT + NUM_CAT), dtype=bool)
    for j in range(NUM_INT):
        values, present[:, j] = bucket_integers(frame.iloc[:, 1 + j])
        keys[:, j] = feasign(FIRST_SLOT + j, values)
    for j in range(NUM_CAT):
        values, present[:, NUM_INT + j] = parse_hex(frame.iloc[:, 1 + NUM_INT + j])
        keys[:, NUM_INT + j] = feasign(FIRST_SLOT + NUM_INT + j, values)
    slots = np.broadcast_to(np.arange(FIRST_SLOT, FIRST_SLOT + NUM_INT + NUM_CAT), keys.shape)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    labels = frame.iloc[:, 0].to_numpy(dtype=np.float32)
    return labels, offsets, keys[present], slots[present]


def convert_criteo(src: Path, out: Path, *, start_day: str = "20190720", split_interval: int = 30,
                   lines_per_slice: int = 100_000, donefile: str = "data.done", max_lines: int = 0) -> dict[str, Any]:
    """Convert `src` (plain or .gz TSV) into out/YYYYMMDD/HHMM/part-00000 slices. Returns a summary."""
    if 1440 % split_interval:
        raise ValueError(f"split_interval must divide 1440 minutes, got {split_interval}")
    clock = dt.datetime.strptime(start_day, "%Y%m%d")
    reader = pd.read_csv(src, sep="\t", header=None, chunksize=lines_per_slice, dtype=str, na_filter=True,
                         nrows=max_lines or None, quoting=3)
    slices = lines = clicks = 0
    last = ""
    for frame in reader:
        if frame.shape[1] != 1 + NUM_INT + NUM_CAT:
            raise ValueError(f"{src}: expected {1 + NUM_INT + NUM_CAT} tab-separated columns (label, I1..I13, "
                             f"C1..C26), found {frame.shape[1]} near line {lines + 1}")
        ints = frame.iloc[:, 1 : 1 + NUM_INT].apply(pd.to_numeric, errors="coerce")
        frame = pd.concat([frame.iloc[:, :1].astype(np.float32), ints, frame.iloc[:, 1 + NUM_INT :]], axis=1)
        labels, offsets, keys, slots = convert_chunk(frame)
        last = clock.strftime("%Y%m%d/%H%M")
        folder = out / last
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".part-00000.tmp"
        tmp.write_bytes(render_slot_lines(labels, offsets, keys, slots))
        os.replace(tmp, folder / "part-00000")
        if donefile:
            (folder / donefile).touch()
        slices += 1
        lines += len(frame)
        clicks += int(labels.sum())
        clock += dt.timedelta(minutes=split_interval)
    return {"slices": slices, "lines": lines, "ctr": clicks / max(lines, 1), "last_slice": last}
