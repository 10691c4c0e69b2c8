"""A run's journal: what it records goes to `runs/<id>/journal.jsonl` first, then to the store.

One JSON object per line, `{"seq":N,"t":TYPE,...}`; the types and their fields are listed in workbench/store/journal.py,
which applies them. `seq` rises by one per record and continues across the attempts of a run, so the store's
`run.journal_seq` (the last record applied, set in the same transaction as the records) says exactly which records
are still to be applied: replaying a journal applies every record once, however often it runs.

- `JournalWriter`: appends (buffered, flushed to the OS with every record: a few records a second, since metric
  points come in batches and progress is coalesced; fsync'd for checkpoint rows and at close).
- `read_records`: complete lines only. A last line without its newline is a write cut short (a crash, or a write
  in progress): it is not a record yet. The writer truncates such a tail when it opens the file again.
- `Replayer`: applies a journal file's records to the store from where the store is (`workbench sync` uses it too).
- `JournalSync`: the run's background thread around a Replayer. The store may be away for a while: training goes
  on, the thread retries with exponential backoff, logs once per outage, and once the store is back after more than
  `outage_warn_s` it adds an event saying how long it was away and how many records were replayed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine

from workbench.store import journal as store_journal

JOURNAL_NAME = "journal.jsonl"
MAX_BATCH_BYTES = 4 << 20  # journal lines applied per transaction (a batch of metric points is ~50 bytes a point)
BACKOFF_CAP_S = 4.0  # the longest wait between two tries while the store is away
EXIT_UNSTORED = 75  # worker exit code (EX_TEMPFAIL): the task ended, but records are only in the journal

T = TypeVar("T")
_log = logging.getLogger(__name__)


class JournalCorrupt(RuntimeError):
    pass


def journal_path(run_dir: Path) -> Path:
    return Path(run_dir) / JOURNAL_NAME


def _seq_of(line: bytes) -> int:
    """The seq of a line written by JournalWriter (`{"seq":N,...`) without parsing the whole line."""
    return int(line[7 : line.index(b",")])


class JournalWriter:
    """Appends records to a run's journal. Thread-safe: the metric flush thread, the training thread and the sync
    thread all append."""

    def __init__(self, path: Path, *, start_after: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._seq = max(start_after, _open_tail(self.path))
        self._file = open(self.path, "ab")
        self._lock = threading.Lock()

    @property
    def last_seq(self) -> int:
        return self._seq

    def append(self, type_: str, *, durable: bool = False, **fields: Any) -> int:
        """Append one record; `durable`: fsync before returning (checkpoint rows: the file they name is fsync'd)."""
        with self._lock:
            seq = self._seq + 1
            line = json.dumps({"seq": seq, "t": type_, **fields}, separators=(",", ":")) + "\n"
            self._file.write(line.encode())
            self._file.flush()  # to the OS: the sync thread reads the file, and a killed worker loses nothing written
            if durable:
                os.fsync(self._file.fileno())
            self._seq = seq
            return seq

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()


def _open_tail(path: Path) -> int:
    """Cut a torn last line off the journal (so the next record starts on a line of its own); the last seq in it."""
    if not path.exists():
        return 0
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        last_newline = _rfind_newline(f, size)
        if last_newline + 1 < size:
            f.truncate(last_newline + 1)
        if last_newline < 0:
            return 0
        line_start = _rfind_newline(f, last_newline) + 1
        f.seek(line_start)
        return _seq_of(f.read(last_newline - line_start))


def _rfind_newline(f: Any, before: int, block: int = 1 << 16) -> int:
    """Offset of the last newline before byte `before` of the open file `f`; -1 if there is none."""
    while before > 0:
        start = max(0, before - block)
        f.seek(start)
        found = f.read(before - start).rfind(b"\n")
        if found >= 0:
            return start + found
        before = start
    return -1


def read_records(path: Path, *, offset: int = 0, after_seq: int = 0, max_bytes: int = MAX_BATCH_BYTES) -> tuple[list[dict[str, Any]], int]:
    """Records with seq > after_seq in the complete lines from byte `offset` (about max_bytes of them), and the
    offset after the last complete line read. A last line without its newline is left for later."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return [], offset
    with f:
        f.seek(offset)
        chunk = f.read(max_bytes)
        end = chunk.rfind(b"\n")
        if end < 0 and len(chunk) == max_bytes:
            chunk += f.readline()  # a line longer than max_bytes: read it whole
            end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    records = []
    position = offset
    for line in chunk[: end + 1].splitlines(keepends=True):
        try:
            if _seq_of(line) > after_seq:
                records.append(json.loads(line))
        except ValueError as exc:
            raise JournalCorrupt(f"{path}: the line at byte {position} is not a journal record ({exc}): {line[:120]!r}") from exc
        position += len(line)
    return records, offset + end + 1


class Replayer:
    """Applies one run's journal file to the store, in order, from the store's `journal_seq` on."""

    def __init__(self, engine: Engine, run_id: str, path: Path):
        self.engine = engine
        self.run_id = run_id
        self.path = Path(path)
        self.applied_seq: int | None = None  # the store's journal_seq as we last saw it (None: not read yet)
        self._offset = 0  # lines before this byte are applied

    def apply_pending(self) -> int:
        """Apply every complete record not in the store yet. Returns how many were applied; raises on store errors
        (nothing of a failed batch is stored; the next call tries again from there)."""
        if self.applied_seq is None:
            self.applied_seq = store_journal.journal_seq(self.engine, self.run_id)
        applied = 0
        while True:
            records, end = read_records(self.path, offset=self._offset, after_seq=self.applied_seq)
            if end == self._offset:
                return applied
            if records:
                if not store_journal.apply_records(self.engine, self.run_id, expected_seq=self.applied_seq, records=records):
                    # another applier (a `workbench sync` beside the run) stored some: go on from where it got
                    self.applied_seq = store_journal.journal_seq(self.engine, self.run_id)
                    continue
                self.applied_seq = int(records[-1]["seq"])
                applied += len(records)
            self._offset = end


def replay(engine: Engine, run_id: str, run_dir: Path) -> tuple[int, int]:
    """Apply what a run's journal holds beyond the store (`workbench sync RUN`). Returns (records applied, the
    store's journal_seq after). Idempotent: a second call applies nothing."""
    replayer = Replayer(engine, run_id, journal_path(run_dir))
    applied = replayer.apply_pending()
    assert replayer.applied_seq is not None
    return applied, replayer.applied_seq


class JournalSync:
    """The background thread that applies a run's journal to the store while the run trains."""

    def __init__(
        self,
        replayer: Replayer,
        writer: JournalWriter,
        *,
        interval: float = 0.5,
        outage_warn_s: float = 60.0,
        logger: logging.Logger | None = None,
        before_sync: Callable[[], None] | None = None,
    ):
        self.replayer = replayer
        self.writer = writer
        self.interval = interval
        self.outage_warn_s = outage_warn_s
        self.log = logger or _log
        self.before_sync = before_sync  # e.g. write the latest progress as a record (progress is coalesced)
        self._lock = threading.Lock()  # the thread and close() never apply at once
        self._stop = threading.Event()
        self._wake = threading.Event()  # nudge(): new metric points, apply them now rather than at the next tick
        self._thread: threading.Thread | None = None
        self._down_since: float | None = None
        self._warned = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="journal-sync", daemon=True)
        self._thread.start()

    def unapplied(self) -> int:
        """Records in the journal that are not in the store (as far as this process knows)."""
        return self.writer.last_seq - (self.replayer.applied_seq or 0)

    def nudge(self) -> None:
        """Apply soon: the points a run logs reach a watching Dashboard one sync earlier (the run's metric buffer
        already batches them, every 0.5 s at most, so this does not sync more often than the interval does)."""
        self._wake.set()

    def _loop(self) -> None:
        delay, ok = self.interval, True
        while True:
            # while the store is away, back off: nudges do not shorten the wait
            (self._wake if ok else self._stop).wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                ok = self.sync_once()
            except Exception:  # the journal itself failed (a full disk): say so, keep trying; close() raises it
                self.log.exception("writing the run's journal failed")
                ok = False
            delay = self.interval if ok else min(BACKOFF_CAP_S, max(self.interval, delay * 2))

    def sync_once(self) -> bool:
        """One try: apply what is pending. False while the store cannot be reached (or refuses the records)."""
        with self._lock:
            if self.before_sync is not None:
                self.before_sync()
            try:
                applied = self.replayer.apply_pending()
            except Exception as exc:  # the store is away (or refuses): keep the records, keep training
                self._note_outage(exc)
                return False
            if self._down_since is not None:
                self._note_recovery(applied)
            return True

    def _note_outage(self, exc: Exception) -> None:
        now = time.time()
        if self._down_since is None:
            self._down_since = now
            self.log.warning(
                "the store cannot be reached (%s: %s); training goes on, its records wait in %s and are stored once it is back",
                type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "", self.writer.path,
            )  # fmt: skip
        elif not self._warned and now - self._down_since >= self.outage_warn_s:
            self._warned = True
            self.log.warning("the store has been unreachable for %.0f s; %d records wait in the journal", now - self._down_since, self.unapplied())

    def _note_recovery(self, applied: int) -> None:
        assert self._down_since is not None
        away = time.time() - self._down_since
        self._down_since, self._warned = None, False
        message = f"the store was unreachable for {away:.0f} s; {applied} records were replayed from the journal"
        self.log.info(message)
        if away >= self.outage_warn_s:
            self.writer.append("event", time=time.time(), kind="store outage", message=message)

    def close(self, wait_s: float) -> int:
        """Stop the thread, then apply what is left, retrying with backoff for up to `wait_s` seconds.
        Returns the number of records still not in the store (0: everything is stored)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + wait_s
        delay = self.interval
        while True:
            before = self.replayer.applied_seq
            if self.sync_once():
                if self.unapplied() == 0:
                    return 0
                if self.replayer.applied_seq != before:
                    continue  # records appended while applying (the outage event): apply them too
                # the store took everything the file holds, yet records are missing: the journal file lost them
                # (deleted or cut with the run's folder). Retrying at once spun a core; back off, then say so.
            if time.monotonic() + delay > deadline:
                return self.unapplied()
            time.sleep(delay)
            delay = min(BACKOFF_CAP_S, delay * 2)


def retry_store(call: Callable[[], T], *, wait_s: float, what: str, logger: logging.Logger | None = None) -> T:
    """`call()` until it succeeds, with exponential backoff, for at most `wait_s` seconds; then its last error.
    For the few store writes of a run's end (its status) that must not be lost to a short outage."""
    log = logger or _log
    deadline = time.monotonic() + wait_s
    delay = 0.25
    logged = False
    while True:
        try:
            return call()
        except Exception as exc:
            if time.monotonic() + delay > deadline:
                raise
            if not logged:
                first_line = (str(exc).strip().splitlines() or [""])[0]
                log.warning("the store cannot be reached to %s (%s: %s); retrying for up to %.0f s", what, type(exc).__name__, first_line, wait_s)
                logged = True
            time.sleep(delay)
            delay = min(BACKOFF_CAP_S, delay * 2)
