"""The store's engine: one per process and URL. SQLite gets WAL, synchronous=NORMAL, busy_timeout and FKs.

Opening a store checks its schema revision (store/schema.py): a new store is created at the newest revision, an
older one is refused with a message naming `workbench db upgrade`.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine, select

from workbench.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from workbench.store.schema import ensure_current

_engines: dict[str, Engine] = {}
_lock = threading.Lock()

BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the training process's writes
    cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a power cut loses at most the last commits
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # wait instead of "database is locked"
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def get_engine(url: str) -> Engine:
    """The engine of the store at `url`. Raises schema.StoreSchemaError if the store needs `workbench db upgrade`."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            try:
                ensure_current(engine, url)
            except BaseException:
                engine.dispose()
                raise
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def by_id_or_prefix(s: Session, table: Any, row_id: str, *, not_found: type[LookupError], what: str) -> Any:
    """The row with this id, or the one row whose id starts with it (as git does for commits); else `not_found`."""
    row = s.get(table, row_id)
    if row is not None:
        return row
    matches = s.exec(select(table).where(table.id.startswith(row_id))).all()
    if len(matches) != 1:
        raise not_found(f"no {what} {row_id!r}" if not matches else f"{row_id!r} matches {len(matches)} {what}s")
    return matches[0]
