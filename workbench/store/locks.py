"""The scheduler lock: one process at a time, on any host, may reconcile runs and start queued ones.

Without it two schedulers (a launch and a supervisor's housekeeping, or two hosts) could both count one free slot
and both fill it. Each backend has the lock made for the job:

- PostgreSQL: a transaction-level advisory lock (`pg_advisory_xact_lock`). Every host that shares the store shares
  it, and the server drops it when the transaction ends or the holder's connection dies.
- SQLite: `flock` on a file beside the database (`<database>.scheduler.lock`). SQLite is one machine's store, so a
  file lock is enough; the kernel drops it when the holder dies.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

# pg advisory locks are keyed by a bigint; any constant works as long as nothing else in the database uses it
SCHEDULER_LOCK_KEY = 0x5742_5343_4845_44  # "WBSCHED"


@contextmanager
def scheduler_lock(engine: Engine, *, wait: bool = True) -> Iterator[bool]:
    """Hold the scheduler lock for the `with` block. Yields True when held; with `wait=False` it yields False at
    once if another process holds it (and the block should skip its work)."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with _postgres_lock(engine, wait) as held:
            yield held
    elif dialect == "sqlite":
        with _file_lock(_sqlite_lock_path(engine), wait) as held:
            yield held
    else:
        raise RuntimeError(f"no scheduler lock for the {dialect} dialect: the workbench store is SQLite or PostgreSQL")


@contextmanager
def _postgres_lock(engine: Engine, wait: bool) -> Iterator[bool]:
    # A transaction-level lock on a connection of its own: it is released on commit/rollback, so a pooled
    # connection never goes back to the pool still holding it.
    with engine.connect() as conn, conn.begin():
        if wait:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEDULER_LOCK_KEY})
            held = True
        else:
            held = bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SCHEDULER_LOCK_KEY}).scalar())
        yield held


def _sqlite_lock_path(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ValueError(f"the scheduler lock needs a SQLite database file, not {engine.url!s}")
    return Path(database).resolve().with_name(Path(database).name + ".scheduler.lock")


@contextmanager
def _file_lock(path: Path, wait: bool) -> Iterator[bool]:
    # flock locks belong to the open file, so two threads of one process that each open the file exclude each
    # other as two processes do
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
