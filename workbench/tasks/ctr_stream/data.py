"""The stream: which folders make a pass, waiting for their donefiles, reading them into batches, prefetching.

Layout (seed 001 section 2): `train_data_dir/YYYYMMDD/HHMM/<files>` (or `.../HH/` with is_data_hourly_placed).
A day has 1440 / split_interval slices; a pass covers split_per_pass consecutive slices. Files whose names start
with "." or "_" (sidecars, _SUCCESS) and the donefile itself are not data.

A loaded pass is shuffled once (seeded by seed, day and pass) and cut into batches whose per-batch structures are
built here, in the prefetch thread, so that the training thread only pulls, computes and pushes:
- `uniq`: the batch's distinct features as indices into the pass's sorted unique keys (`PassData.keys`);
- `inverse` + `bag_offsets`: its tokens sorted by (impression, slot) for a sum-pooling embedding bag per slot;
- `show`/`click`/`slot` per distinct feature: what the push merges (one show per occurrence, click = label).
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.ps import Dist, file_share
from workbench.tasks.ctr_stream.slots import MAX_SLOT, BadLine, ParsedLines, parse_slot_lines


class DataError(RuntimeError):
    """The data of a pass cannot be used (missing folder, too many malformed lines, ...)."""


class DataWaitTimeout(DataError):
    """A slice's donefile did not appear within data_max_wait_second."""


class LoadCancelled(RuntimeError):
    """Loading stopped because the run is stopping."""


# -- planning -------------------------------------------------------------------------------------------------------
def pass_intervals(split_interval: int, split_per_pass: int, is_data_hourly_placed: bool) -> list[list[str]]:
    """PaddleRec's get_online_pass_interval: the slice folder names of each pass of a day.

    split_interval 5, split_per_pass 2 gives [["0000", "0005"], ["0010", "0015"], ...] (the seed's prose example
    [[0000, 0005], [0005, 0010], ...] overlaps; the code does not).
    """
    splits_per_day = 1440 // split_interval
    names = [f"{m // 60:02d}" if is_data_hourly_placed else f"{m // 60:02d}{m % 60:02d}"
             for m in range(0, splits_per_day * split_interval, split_interval)]
    return [names[i : i + split_per_pass] for i in range(0, (splits_per_day // split_per_pass) * split_per_pass, split_per_pass)]


@dataclass(frozen=True)
class PassSpec:
    day: str  # YYYYMMDD
    pass_id: int  # 1-based within the day (PaddleRec's pass_id)
    index: int  # 0-based over the whole run
    splits: tuple[str, ...]  # slice folder names
    last_of_day: bool

    @property
    def label(self) -> str:
        return f"{self.day}/{self.splits[0]}" + (f"-{self.splits[-1]}" if len(self.splits) > 1 else "")


def plan_passes(cfg: CtrStreamConfig) -> list[PassSpec]:
    intervals = pass_intervals(cfg.split_interval, cfg.split_per_pass, cfg.is_data_hourly_placed)
    plan: list[PassSpec] = []
    for day in cfg.days():
        for i, splits in enumerate(intervals):
            plan.append(PassSpec(day, i + 1, len(plan), tuple(splits), i == len(intervals) - 1))
    return plan


# -- waiting and listing ------------------------------------------------------------------------------------------
def wait_for_donefile(
    folder: Path,
    donefile: str,
    *,
    sleep_s: float,
    max_wait_s: float,
    stop: threading.Event,
    on_wait: Callable[[str | None], None] = lambda _: None,
) -> float:
    """Block until `folder/donefile` exists; returns the seconds waited. Raises DataWaitTimeout or LoadCancelled."""
    marker = folder / donefile
    t0 = time.monotonic()
    while not marker.is_file():
        waited = time.monotonic() - t0
        if max_wait_s and waited > max_wait_s:
            raise DataWaitTimeout(
                f"no {donefile} in {folder} after {waited:.0f} s (data_max_wait_second={max_wait_s:g}); the data of "
                f"this slice is not complete. Check the producer, or raise data_max_wait_second (0 waits forever)"
            )
        on_wait(f"{folder.parent.name}/{folder.name}")
        if stop.wait(sleep_s):
            raise LoadCancelled(f"stopped while waiting for {marker}")
    on_wait(None)
    return time.monotonic() - t0


def list_data_files(folder: Path, donefile: str) -> list[Path]:
    """Data files under a slice folder, recursively, sorted; hidden/underscore files and the donefile excluded."""
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "_")) and p.name != donefile]
    return sorted(files)


def read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


# -- a loaded pass ------------------------------------------------------------------------------------------------
@dataclass
class Batch:
    labels: np.ndarray  # float32 [B]
    uniq: np.ndarray  # int64 [U], indices into PassData.keys
    inverse: np.ndarray  # int64 [T], token -> position in uniq, tokens sorted by (impression, slot)
    bag_offsets: np.ndarray  # int64 [B * S], first token of each (impression, slot) bag
    show: np.ndarray  # float32 [U]
    click: np.ndarray  # float32 [U]
    slot: np.ndarray  # uint16 [U]
    first: int  # index of the batch's first impression in the pass (after the shuffle)

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class PassData:
    keys: np.ndarray  # uint64 [K], the pass's distinct features
    batches: list[Batch]
    examples: int
    total_lines: int
    bad_lines: int
    files: list[Path]
    ins_ids: list[str] | None = None  # per impression, shuffled order (only when a dump needs them)
    wait_seconds: float = 0.0
    read_seconds: float = 0.0
    quoted_bad_lines: list[str] = field(default_factory=list)


@dataclass
class _Merged:
    labels: np.ndarray
    offsets: np.ndarray
    keys: np.ndarray
    slots: np.ndarray
    ins_ids: list[str] | None


class PassReader:
    """Reads the files of a pass into a PassData: parse, check bad lines, shuffle, batch."""

    def __init__(self, cfg: CtrStreamConfig, logger: logging.Logger | None = None, with_ins_id: bool = False):
        self.cfg = cfg
        self.slots = np.asarray(cfg.slots, dtype=np.int64)
        self.slot_pos = np.full(MAX_SLOT + 1, -1, dtype=np.int64)
        self.slot_pos[self.slots] = np.arange(self.slots.size)
        self.keep_slots = self.slot_pos >= 0
        self.with_ins_id = with_ins_id
        self.log = logger or logging.getLogger(__name__)

    def read_files(self, files: list[Path], shuffle_seed: int | None, where: str) -> PassData:
        t0 = time.monotonic()
        parts, total, bad, quoted = [], 0, 0, []
        for path in files:
            parsed = parse_slot_lines(read_bytes(path), self.keep_slots, with_ins_id=self.with_ins_id)
            total += parsed.total_lines
            bad += parsed.bad_count
            quoted += [_quote(path, b) for b in parsed.bad_lines][: max(0, 5 - len(quoted))]
            if parsed.ins_ids is not None:
                parsed.ins_ids = [i or f"{path.name}:{n}" for i, n in zip(parsed.ins_ids, parsed.line_numbers.tolist())]
            parts.append(parsed)
        if bad:
            self.log.warning("%s: skipped %d malformed line(s) of %d; first: %s", where, bad, total, " | ".join(quoted))
        if total and bad / total > self.cfg.max_bad_line_ratio:
            raise DataError(
                f"{where}: {bad} of {total} lines are malformed ({bad / total:.1%} > max_bad_line_ratio "
                f"{self.cfg.max_bad_line_ratio:g}). First ones:\n  " + "\n  ".join(quoted)
                + "\nFix the data (format: [ins_id<TAB>]label:1 feasign:slot ...) or raise max_bad_line_ratio."
            )
        merged = _merge(parts)
        data = self._batch(merged, shuffle_seed)
        data.total_lines, data.bad_lines, data.files, data.quoted_bad_lines = total, bad, files, quoted
        data.read_seconds = time.monotonic() - t0
        return data

    def _batch(self, m: _Merged, shuffle_seed: int | None) -> PassData:
        n_lines = int(m.labels.shape[0])
        s = self.slots.size
        counts = np.diff(m.offsets)
        perm = np.random.default_rng(shuffle_seed).permutation(n_lines) if shuffle_seed is not None else np.arange(n_lines)
        # Tokens in (shuffled impression, slot position) order, the embedding bags' layout: move each line's token
        # range to its new place (O(T)), then sort within lines only if some line lists its slots out of order.
        new_counts = counts[perm]
        ex_offsets = np.zeros(n_lines + 1, dtype=np.int64)
        np.cumsum(new_counts, out=ex_offsets[1:])
        order = np.repeat(m.offsets[:-1][perm] - ex_offsets[:-1], new_counts) + np.arange(int(ex_offsets[-1]))
        example = np.repeat(np.arange(n_lines), new_counts)
        position = self.slot_pos[m.slots[order]]
        line_start = np.zeros(order.size, dtype=bool)
        line_start[ex_offsets[:-1][new_counts > 0]] = True
        if ((np.diff(position) < 0) & ~line_start[1:]).any():
            resort = np.argsort(example * s + position, kind="stable")
            order, position = order[resort], position[resort]
        bag_id = example * s + position
        # distinct features of the pass by hashing (pandas.factorize), not sorting
        key_idx, pass_keys = pd.factorize(m.keys[order], sort=False)
        token_slot = m.slots[order]
        labels = m.labels[perm]
        token_label = labels[example]

        batches = []
        size = self.cfg.train_batch_size
        scratch = np.empty(pass_keys.size, dtype=np.int64)  # per distinct feature of the pass; no sort per batch
        for first in range(0, n_lines, size):
            last = min(first + size, n_lines)
            lo, hi = ex_offsets[first], ex_offsets[last]
            tokens = key_idx[lo:hi]
            position = np.arange(tokens.size)
            scratch[tokens] = position  # the last occurrence of each feature wins
            uniq = tokens[scratch[tokens] == position]  # distinct features, in order of last occurrence
            scratch[uniq] = np.arange(uniq.size)
            inverse = scratch[tokens]
            bag_sizes = np.bincount(bag_id[lo:hi] - first * s, minlength=(last - first) * s)
            bag_offsets = np.zeros(bag_sizes.size, dtype=np.int64)
            np.cumsum(bag_sizes[:-1], out=bag_offsets[1:])
            slot = np.zeros(uniq.size, dtype=np.uint16)
            slot[inverse] = token_slot[lo:hi]
            batches.append(Batch(
                labels=labels[first:last],
                uniq=uniq,
                inverse=inverse,
                bag_offsets=bag_offsets,
                show=np.bincount(inverse, minlength=uniq.size).astype(np.float32),
                click=np.bincount(inverse, weights=token_label[lo:hi], minlength=uniq.size).astype(np.float32),
                slot=slot,
                first=first,
            ))
        ins_ids = [m.ins_ids[i] for i in perm.tolist()] if m.ins_ids is not None else None
        return PassData(keys=pass_keys, batches=batches, examples=n_lines, total_lines=0, bad_lines=0, files=[],
                        ins_ids=ins_ids)


def _merge(parts: list[ParsedLines]) -> _Merged:
    if not parts:
        return _Merged(np.zeros(0, np.float32), np.zeros(1, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.uint16), None)
    offsets = [parts[0].offsets]
    base = int(parts[0].offsets[-1])
    for p in parts[1:]:
        offsets.append(p.offsets[1:] + base)
        base += int(p.offsets[-1])
    ins_ids = [i for p in parts for i in p.ins_ids] if parts[0].ins_ids is not None else None
    return _Merged(
        labels=np.concatenate([p.labels for p in parts]),
        offsets=np.concatenate(offsets),
        keys=np.concatenate([p.keys for p in parts]),
        slots=np.concatenate([p.slots for p in parts]),
        ins_ids=ins_ids,
    )


def _quote(path: Path, bad: BadLine) -> str:
    return f"{path}:{bad.line}: {bad.reason}: {bad.text!r}"


# -- the pass loader and its prefetch thread ----------------------------------------------------------------------
_OUTCOMES = ("waiting", "ready", "cancelled", "timeout", "error")  # of one round of rank 0's wait for a pass


class PassLoader:
    """Waits for a pass's slices (donefiles), lists and reads them. Safe to run in a background thread.

    With several ranks, rank 0 alone waits for the donefiles and lists the files; each round of its wait (every
    data_sleep_second) ends in a broadcast on the loader's own process group, so the other ranks learn at once
    that the pass is ready (with its file list), still waiting, cancelled, or failed, and no collective blocks for
    longer than one round. Each rank then reads its share of the files (PaddleRec's get_file_shard).
    """

    def __init__(self, cfg: CtrStreamConfig, data_dir: Path, reader: PassReader, stop: threading.Event,
                 dist: Dist | None = None):
        self.cfg = cfg
        self.data_dir = data_dir
        self.reader = reader
        self.stop = stop
        self.dist = dist or Dist()
        self.waiting_for: str | None = None  # the slice the loader is blocked on, for the dashboard

    def load(self, spec: PassSpec, on_wait: Callable[[str | None], None] | None = None) -> PassData:
        """Wait for the pass's slices, then read them. `on_wait` (if given) hears about waits as they happen."""

        def report(text: str | None) -> None:
            self.waiting_for = text
            if on_wait is not None:
                on_wait(text)

        if self.dist.distributed:
            files, waited = self._agreed_files(spec, report)
            files = file_share(files, self.dist.rank, self.dist.world)
        else:
            files, waited = self._files(spec, report, max_wait_s=self.cfg.data_max_wait_second)
        seed = (self.cfg.seed * 1_000_003 + int(spec.day) * 1_009 + spec.pass_id) % 2**63 if self.cfg.shuffle else None
        data = self.reader.read_files(files, seed, where=f"pass {spec.pass_id} of {spec.day} ({spec.label})"
                                      + (f" on rank {self.dist.rank}" if self.dist.distributed else ""))
        data.wait_seconds = waited
        return data

    def _files(self, spec: PassSpec, report: Callable[[str | None], None], max_wait_s: float) -> tuple[list[Path], float]:
        """(data files of the pass's slices, seconds waited for their donefiles)."""
        waited = 0.0
        folders = []
        for split in spec.splits:
            folder = self.data_dir / spec.day / split
            if self.cfg.data_donefile:
                waited += wait_for_donefile(folder, self.cfg.data_donefile, sleep_s=self.cfg.data_sleep_second,
                                            max_wait_s=max_wait_s, stop=self.stop, on_wait=report)
            elif not folder.is_dir():
                raise DataError(
                    f"data folder {folder} does not exist (pass {spec.pass_id} of {spec.day}). Check train_data_dir, "
                    "start_day/end_day and split_interval; set data_donefile to wait for data still being written"
                )
            folders.append(folder)
        return [f for folder in folders for f in list_data_files(folder, self.cfg.data_donefile)], waited

    def _agreed_files(self, spec: PassSpec, report: Callable[[str | None], None]) -> tuple[list[Path], float]:
        """Rank 0 waits in rounds of one probe. Every round ends in an allreduce of (rank 0's outcome, any rank's
        stop), so a stop on any rank (a cancel, or a rank that failed and closes its loader) ends every rank's wait;
        once rank 0 is done, its outcome (the file list, or the error) is broadcast."""
        t0 = time.monotonic()
        while True:
            outcome: tuple[str, Any] = ("waiting", None)
            if self.dist.rank == 0:
                outcome = self._probe(spec, report, t0)
            else:
                report(self.waiting_for)  # lets the caller pass on a stop request
            code, stops = self.dist.all_sum(np.array([_OUTCOMES.index(outcome[0]), float(self.stop.is_set())]),
                                            group=self.dist.data).tolist()
            if stops > 0:
                raise LoadCancelled(f"stopped while loading pass {spec.pass_id} of {spec.day}")
            if _OUTCOMES[int(code)] == "waiting":
                continue
            kind, value = self.dist.broadcast(outcome, group=self.dist.data)
            if kind == "ready":
                report(None)
                return [Path(f) for f in value], time.monotonic() - t0
            if kind == "cancelled":
                raise LoadCancelled(value)
            if kind == "timeout":
                raise DataWaitTimeout(value)
            raise DataError(value)

    def _probe(self, spec: PassSpec, report: Callable[[str | None], None], t0: float) -> tuple[str, Any]:
        missing = [self.data_dir / spec.day / split for split in spec.splits if self.cfg.data_donefile
                   and not (self.data_dir / spec.day / split / self.cfg.data_donefile).is_file()]
        if not missing:
            try:
                return "ready", [str(f) for f in self._files(spec, report, max_wait_s=0)[0]]
            except DataError as exc:
                return "error", str(exc)
        waited = time.monotonic() - t0
        limit = self.cfg.data_max_wait_second
        if limit and waited > limit:
            return "timeout", (f"no {self.cfg.data_donefile} in {missing[0]} after {waited:.0f} s "
                               f"(data_max_wait_second={limit:g}); the data of this slice is not complete. Check the "
                               "producer, or raise data_max_wait_second (0 waits forever)")
        text = f"{missing[0].parent.name}/{missing[0].name}"
        if self.waiting_for != text:
            self.reader.log.info("pass %d of %s: waiting for %s in %s (every %g s)", spec.pass_id, spec.day,
                                 self.cfg.data_donefile, missing[0], self.cfg.data_sleep_second)
        report(text)
        if self.stop.wait(self.cfg.data_sleep_second):
            return "cancelled", f"stopped while waiting for {missing[0] / self.cfg.data_donefile}"
        return "waiting", None


class Prefetcher:
    """Loads pass k+1 in one background thread while pass k trains (when `enabled`); errors surface in `get`."""

    def __init__(self, loader: PassLoader, enabled: bool):
        self.loader = loader
        self.enabled = enabled
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctr-prefetch") if enabled else None
        self._futures: dict[int, Future[PassData]] = {}

    def start(self, spec: PassSpec) -> None:
        if self._pool is not None and spec.index not in self._futures:
            self._futures[spec.index] = self._pool.submit(self.loader.load, spec)

    def get(self, spec: PassSpec, on_wait: Callable[[str | None], None], should_stop: Callable[[], bool]) -> PassData:
        """The pass's data; while blocked, reports the slice being waited for through `on_wait` every 0.2 s."""
        future = self._futures.pop(spec.index, None)
        if future is None:
            if self._pool is None:
                def report(text: str | None) -> None:  # called between polls: the place to notice a stop
                    on_wait(text)
                    if should_stop():
                        self.loader.stop.set()

                return self.loader.load(spec, report)
            future = self._pool.submit(self.loader.load, spec)
        while True:
            try:
                return future.result(timeout=0.2)
            except TimeoutError:  # still loading or waiting: show what it waits for, pass on a stop request
                if should_stop():
                    self.loader.stop.set()
                on_wait(self.loader.waiting_for)

    def close(self) -> None:
        self.loader.stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()
