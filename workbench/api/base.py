"""What every part of the api shares: the store's engine, where the store is, who the user is."""

from __future__ import annotations

import getpass

from sqlalchemy import Engine

from workbench.settings import get_settings
from workbench.store import get_engine


def engine() -> Engine:
    return get_engine(get_settings().database_url)


def store_location() -> str:
    settings = get_settings()
    return settings.db_url or str(settings.home_dir / "workbench.db")


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
