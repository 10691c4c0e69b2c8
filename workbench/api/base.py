"""What every part of the api shares: the store's engine, where the store is, its schema, who the user is."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from sqlalchemy import Engine

from workbench.settings import get_settings
from workbench.store import get_engine
from workbench.store import schema


def engine() -> Engine:
    """The store's engine. Raises StoreSchemaError (its message names `workbench db upgrade`) for an old store."""
    return get_engine(get_settings().database_url)


def store_location() -> str:
    settings = get_settings()
    return settings.db_url or str(settings.home_dir / "workbench.db")


@dataclass(frozen=True)
class DbRevision:
    location: str
    revision: str | None  # None: an empty store (created at `head` when first opened)
    head: str  # the revision this workbench needs
    versioned: bool  # False: made before the schema was versioned (it has the baseline schema)

    @property
    def up_to_date(self) -> bool:
        return self.revision == self.head


def _revision(state: schema.SchemaState) -> DbRevision:
    return DbRevision(state.location, state.revision, state.head, state.versioned)


def db_current() -> DbRevision:
    """The store's schema revision and the one this workbench needs; changes nothing."""
    return _revision(schema.current(get_settings().database_url))


def db_upgrade() -> tuple[DbRevision, DbRevision]:
    """Upgrade the store in place to the revision this workbench needs (in one transaction; every row is kept).
    Returns the revisions before and after."""
    before, after = schema.upgrade(get_settings().database_url)
    return _revision(before), _revision(after)


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
