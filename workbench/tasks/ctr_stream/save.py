"""Model outputs in PaddleRec's layout under save_model_path, and the donefiles that announce them.

    {save_model_path}/{day}/{pass}/        checkpoint model   (save mode 0: every feature)
    {save_model_path}/{day}/delta-{pass}/  xbox delta model   (mode 1: filtered by base/delta thresholds)
    {save_model_path}/{next_day}/base/     xbox base model    (mode 2: filtered by base_threshold)
    {save_model_path}/{next_day}/0/        batch model        (mode 3: every feature, after shrink)
    {save_model_path}/donefile.txt         checkpoints and batch models: day, base key, path, pass (-1 = batch), 0
    {save_model_path}/base_donefile.txt    JSON lines for base models;  patch_donefile.txt: for deltas

Inside a model folder: `000/part-000-NNNNN` (sparse table 0, one part file per shard - key % shard_num -, each
written by the rank that holds the shard, `.gz` with converter gzip)
with one line per feature, `key slot unseen_days delta_score show click embed_w embed_g2sum... [embedx_w...
embedx_g2sum...]` (the embedx part only when the feature has one and score >= embedx_threshold, as ParseToString
writes it; numbers printed like C++'s ostream, i.e. %g), plus `dense.pt` (the MLP's state_dict, with the optimizer
for modes 0 and 3) and `meta.json`. Folders are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.tasks.ctr_stream.ps import Dist, owned_shards
from workbench.tasks.ctr_stream.table import SAVE_BASE, SAVE_BATCH, SAVE_CHECKPOINT, SAVE_DELTA, SparseTable

MODE_NAMES = {SAVE_CHECKPOINT: "checkpoint", SAVE_DELTA: "delta", SAVE_BASE: "base", SAVE_BATCH: "batch"}
TABLE_DIR = "000"  # PaddleRec's TableDir: "%03d" % table_id; the embedding table is table 0
LINES_PER_CHUNK = 65536


def model_folder(root: Path, day: str, mode: int, pass_id: int = 0) -> Path:
    if mode == SAVE_CHECKPOINT:
        return root / day / str(pass_id)
    if mode == SAVE_DELTA:
        return root / day / f"delta-{pass_id}"
    if mode == SAVE_BASE:
        return root / day / "base"
    return root / day / "0"


@dataclass
class SavedRows:
    """A copy of the features one save writes, taken at save time so that writing can happen later (and in another
    thread) while training goes on. The float fields are in line order: delta_score show click embed_w state..."""

    keys: np.ndarray  # uint64 [n]
    slot: np.ndarray  # uint16 [n]
    unseen_days: np.ndarray  # uint16 [n]
    vals: np.ndarray  # float32 [n, 4 + embed_state_dim]
    has_embedx: np.ndarray  # bool [n]: the line carries embedx (has an mf part and score >= embedx_threshold)
    mf: np.ndarray  # float32 [sum(has_embedx), embedx_dim + embedx_state_dim]

    @classmethod
    def take(cls, table: SparseTable, mode: int) -> tuple[SavedRows, np.ndarray]:
        """The rows `mode` selects (and the selection mask, for the after-save update)."""
        mask = table.save_mask(mode)
        rows = np.flatnonzero(mask)
        has = table.saves_embedx(rows)
        saved = cls(keys=table.keys[rows], slot=table.slot[rows], unseen_days=table.unseen_days[rows],
                    vals=np.take(table.vals, rows, axis=0), has_embedx=has,
                    mf=np.take(table.mf, table.mf_index[rows[has]], axis=0))
        return saved, mask

    @property
    def count(self) -> int:
        return int(self.keys.size)


def save_model(folder: Path, table: SparseTable, mode: int, dense: dict[str, Any], meta: dict[str, Any], *,
               shard_num: int = 1, compress: bool = False) -> int:
    """Write one model folder now, then apply the mode's after-save updates to the table. Returns the count."""
    saved, mask = SavedRows.take(table, mode)
    write_model(folder, saved, mode, dense, meta, shard_num=shard_num, compress=compress)
    table.update_after_save(mode, mask)
    return saved.count


def write_model(folder: Path, saved: SavedRows, mode: int, dense: dict[str, Any], meta: dict[str, Any], *,
                shard_num: int = 1, compress: bool = False, dist: Dist | None = None) -> int:
    """Write a model folder from a snapshot, under a temporary name renamed when complete (replacing an old one).

    With several ranks every rank calls this with its own shard's snapshot and writes the part files of the table
    shards it holds; rank 0 prepares the temporary folder, writes dense.pt and meta.json once all part files are
    written (the count's sum over ranks is that point), and renames. Returns the features saved over all ranks."""
    dist = dist or Dist()
    tmp = folder.with_name(folder.name + ".tmp")
    if dist.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / TABLE_DIR).mkdir(parents=True)
    dist.all_sum(np.zeros(1), group=dist.save)  # the folder exists before any rank writes into it
    shard = (saved.keys % np.uint64(shard_num)).astype(np.int64)
    mf_row = np.cumsum(saved.has_embedx) - 1  # line i's row in saved.mf, where it has one
    for s in owned_shards(dist.rank, shard_num, dist.world):
        name = f"part-000-{s:05d}" + (".gz" if compress else "")
        opener = gzip.open if compress else open
        with opener(tmp / TABLE_DIR / name, "wb") as f:  # type: ignore[operator]
            lines = np.flatnonzero(shard == s)
            for lo in range(0, lines.size, LINES_PER_CHUNK):
                f.write(format_lines(saved, lines[lo : lo + LINES_PER_CHUNK], mf_row).encode())
    count = int(dist.all_sum(np.array([float(saved.count)]), group=dist.save)[0])
    if dist.rank != 0:
        return count
    torch.save(dense, tmp / "dense.pt")
    meta = {**meta, "mode": mode, "mode_name": MODE_NAMES[mode], "features": count,
            "line_format": "key slot unseen_days delta_score show click embed_w embed_g2sum... "
                           "[embedx_w... embedx_g2sum...]"}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return count


def format_lines(saved: SavedRows, lines: np.ndarray, mf_row: np.ndarray | None = None) -> str:
    """The text of the saved features `lines`, one line each.

    One `%` over one format string for all the lines (a line's format has the embedx fields or not): the per-line
    Python work of formatting line by line cost about a third of a base model's write (the %g of every number is
    the rest), and at the default batch size the day-end base and batch models are a visible share of a 1-rank run.
    """
    if mf_row is None:
        mf_row = np.cumsum(saved.has_embedx) - 1
    if lines.size == 0:
        return ""
    width = saved.vals.shape[1]
    base_fmt = "%d %d %d" + " %g" * width
    with_x = saved.has_embedx[lines]
    x = saved.mf[mf_row[lines[with_x]]]
    x_fmt = base_fmt + " %g" * x.shape[1]
    columns = [saved.keys[lines].tolist(), saved.slot[lines].tolist(), saved.unseen_days[lines].tolist(),
               *(saved.vals[lines, j].tolist() for j in range(width))]
    if with_x.all():
        values = itertools.chain.from_iterable(zip(*columns, *(x[:, j].tolist() for j in range(x.shape[1]))))
        return "\n".join([x_fmt] * lines.size) % tuple(values) + "\n"
    has_x = with_x.tolist()
    x_rows = iter(x.tolist())
    values = itertools.chain.from_iterable(row + tuple(next(x_rows)) if h else row for row, h in zip(zip(*columns), has_x))
    return "\n".join([x_fmt if h else base_fmt for h in has_x]) % tuple(values) + "\n"


def read_model_lines(folder: Path, base_width: int, deconverter: str = "none") -> dict[str, np.ndarray]:
    """Read a saved folder's sparse part back: keys uint64 [n], values float64 [n, w] (NaN-padded where a line
    has no embedx part) and has_embedx bool [n]. `base_width` = values per line without embedx (6 + embed state
    dim). Part files ending .gz, or every part file with deconverter "gzip", are gunzipped. Loading is not a hot
    path: lines are grouped by width in Python, the numbers parsed by np.loadtxt."""
    if not (folder / TABLE_DIR).is_dir():
        raise FileNotFoundError(f"{folder} is not a saved model folder (no {TABLE_DIR}/ with part files)")
    keys, values = [], []
    for path in sorted((folder / TABLE_DIR).glob("part-*")):
        zipped = path.suffix == ".gz" or deconverter == "gzip"
        data = gzip.open(path, "rb").read() if zipped else path.read_bytes()
        lines = [line for line in data.split(b"\n") if line]
        width = np.array([line.count(b" ") for line in lines])  # values after the key
        for w in np.unique(width).tolist():
            block = b"\n".join(line for line, n in zip(lines, width) if n == w)
            keys.append(np.loadtxt(io.BytesIO(block), usecols=0, dtype=np.uint64, ndmin=1))
            values.append(np.loadtxt(io.BytesIO(block), usecols=range(1, w + 1), dtype=np.float64, ndmin=2))
    if not keys:
        return {"keys": np.zeros(0, np.uint64), "values": np.zeros((0, base_width)), "has_embedx": np.zeros(0, bool)}
    widest = max(v.shape[1] for v in values)
    merged = np.concatenate([np.pad(v, ((0, 0), (0, widest - v.shape[1])), constant_values=np.nan) for v in values])
    has_embedx = np.concatenate([np.full(v.shape[0], v.shape[1] > base_width) for v in values])
    return {"keys": np.concatenate(keys), "values": merged, "has_embedx": has_embedx}


# -- donefiles ----------------------------------------------------------------------------------------------------
def write_model_donefile(root: Path, day: str, pass_id: int, xbox_base_key: int, path: Path) -> None:
    """Append `day \\t base_key \\t path \\t pass_id \\t 0` to donefile.txt unless (day, pass_id) is there already."""
    donefile = root / "donefile.txt"
    lines = donefile.read_text().splitlines() if donefile.exists() else []
    for line in lines:
        fields = line.split("\t")
        if len(fields) >= 4 and fields[0] == day and fields[3] == str(pass_id):
            return
    lines.append(f"{day}\t{xbox_base_key}\t{path}\t{pass_id}\t0")
    _atomic_write(donefile, "\n".join(lines) + "\n")


def write_xbox_donefile(root: Path, mode: int, xbox_base_key: int, path: Path, record_count: int,
                        ins_path: str, monitor_data: str) -> None:
    """Append one JSON line to base_donefile.txt (mode 2) or patch_donefile.txt (mode 1)."""
    donefile = root / ("base_donefile.txt" if mode == SAVE_BASE else "patch_donefile.txt")
    entry = {"id": str(int(time.time())), "key": str(xbox_base_key), "input": f"{path}/{TABLE_DIR}",
             "record_count": str(record_count), "partition_type": "2", "job_name": "ctr_stream",
             "ins_tag": "feasign", "ins_path": ins_path, "monitor_data": monitor_data}
    lines = donefile.read_text().splitlines() if donefile.exists() else []
    lines = [line for line in lines if json.loads(line).get("input") != entry["input"]]  # a rerun replaces its line
    lines.append(json.dumps(entry))
    _atomic_write(donefile, "\n".join(lines) + "\n")


def recorded_base_key(root: Path, base: Path) -> int | None:
    """The xbox base key base_donefile.txt recorded for the base model folder `base`, if any."""
    donefile = root / "base_donefile.txt"
    if not donefile.exists():
        return None
    for line in reversed(donefile.read_text().splitlines()):
        entry = json.loads(line)
        if entry.get("input") == f"{base}/{TABLE_DIR}":
            return int(entry["key"])
    return None


def last_donefile_entry(root: Path) -> tuple[str, int, str] | None:
    """(day, pass_id, path) of the last line of donefile.txt, as PaddleRec's get_last_save_model reads it."""
    donefile = root / "donefile.txt"
    if not donefile.exists():
        return None
    lines = [line for line in donefile.read_text().splitlines() if line.strip()]
    if not lines:
        return None
    fields = lines[-1].split("\t")
    return fields[0], int(fields[3]), fields[2]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
