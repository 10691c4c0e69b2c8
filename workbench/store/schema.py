"""The store's schema version: Alembic revisions in store/migrations/versions/, applied programmatically.

- A brand-new store is created at the head revision when it is first opened. Processes that open it at once are
  serialised: a file lock beside the SQLite file, `pg_advisory_xact_lock` on PostgreSQL.
- A store at an older revision, or one made by `create_all` before the schema was versioned (no alembic_version
  table: that is the baseline, 0001), is refused with a message naming `workbench db upgrade`.
- `upgrade()` runs the pending revisions in one transaction (PostgreSQL and SQLite both have transactional DDL;
  SQLite connections are opened so that they use it), so a failed upgrade leaves the store as it was.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

HEAD = "0003"  # the newest revision in migrations/versions/ (tests/test_migrations.py checks they agree)
BASELINE = "0001"  # the schema of stores made before Alembic
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_KEY = 0x776B_6462  # "wkdb": one advisory lock id for schema changes of this store


class StoreSchemaError(RuntimeError):
    """The store's schema is not the one this code works with."""


@dataclass(frozen=True)
class SchemaState:
    location: str  # the SQLite file, or the database URL without its password
    revision: str | None  # None: no workbench tables yet
    versioned: bool  # False: made by create_all before Alembic (it is at the baseline revision)

    @property
    def head(self) -> str:
        return HEAD

    @property
    def up_to_date(self) -> bool:
        return self.revision == HEAD


def location(url: str) -> str:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return u.database or ":memory:"
    return u.render_as_string(hide_password=True)


def _read_state(conn: Connection, url: str) -> SchemaState:
    insp = inspect(conn)
    if insp.has_table("alembic_version"):
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
        return SchemaState(location(url), revision, True)
    if insp.has_table("run"):
        return SchemaState(location(url), BASELINE, False)
    return SchemaState(location(url), None, True)


def _known_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    return [s.revision for s in ScriptDirectory(str(MIGRATIONS)).walk_revisions()]


def refusal(state: SchemaState) -> str:
    """What a user is told when the store is not at HEAD (and not brand new)."""
    if state.revision not in _known_revisions():
        return (
            f"The store at {state.location} has schema revision {state.revision}, which this workbench does not know "
            f"(it knows up to {HEAD}): a newer workbench upgraded it. Install that version to use this store."
        )
    made = "was made before the schema was versioned (revision 0001)" if not state.versioned else f"is at schema revision {state.revision}"
    return (
        f"The store at {state.location} {made}; this workbench needs revision {HEAD}. Back it up (copy the file or "
        f"pg_dump the database), then run `workbench db upgrade`: it upgrades the store in place and keeps every run."
    )


def ensure_current(engine: Engine, url: str) -> None:
    """Return if the store is at HEAD; create a brand-new store at HEAD; otherwise raise StoreSchemaError."""
    with engine.connect() as conn:
        state = _read_state(conn, url)
    if state.up_to_date:
        return
    if state.revision is None:
        _migrate(url, only_if_empty=True)
        with engine.connect() as conn:
            state = _read_state(conn, url)
        if state.up_to_date:
            return
    raise StoreSchemaError(refusal(state))


def current(url: str) -> SchemaState:
    """The store's revision; changes nothing in the store."""
    eng = create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            return _read_state(conn, url)
    finally:
        eng.dispose()


def upgrade(url: str, revision: str = "head") -> tuple[SchemaState, SchemaState]:
    """Bring the store to `revision` (default: HEAD; a new store is created). Returns the states before and after.
    (An older `revision` is for tests that build a store as an older workbench left it.)"""
    return _migrate(url, only_if_empty=False, revision=revision)


def _migrate(url: str, *, only_if_empty: bool, revision: str = "head") -> tuple[SchemaState, SchemaState]:
    from alembic import command
    from alembic.config import Config

    eng = _migration_engine(url)
    try:
        with _file_lock(url), eng.begin() as conn:
            if conn.dialect.name == "postgresql":
                # held until this transaction ends; a second process waits here, then sees the finished schema
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            before = _read_state(conn, url)
            if before.revision == (HEAD if revision == "head" else revision) or (only_if_empty and before.revision is not None):
                return before, before
            if before.revision not in (None, *_known_revisions()):
                raise StoreSchemaError(refusal(before))
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            if not before.versioned:
                command.stamp(cfg, BASELINE)  # a create_all store is the baseline schema
            command.upgrade(cfg, revision)
            after = _read_state(conn, url)
        return before, after
    finally:
        eng.dispose()


def _migration_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, poolclass=NullPool)
    eng = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})

    # pysqlite opens transactions itself and commits before DDL; take that over so the whole upgrade is one
    # transaction (SQLAlchemy's documented recipe). Foreign keys stay off (SQLite's default): a batch migration
    # drops and re-creates `run`, and with them on, the drop would cascade to every metric and checkpoint row.
    @event.listens_for(eng, "connect")
    def _connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA foreign_keys=OFF")

    @event.listens_for(eng, "begin")
    def _begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock now: readers go on, writers wait

    return eng


@contextmanager
def _file_lock(url: str) -> Iterator[None]:
    """An exclusive lock on `<store file>.migrate.lock` (SQLite files only; PostgreSQL uses an advisory lock)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        with nullcontext():
            yield
        return
    path = Path(u.database).with_name(Path(u.database).name + ".migrate.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
