"""The store: the only package with SQL. Functions take the engine and return plain read models."""

from workbench.store.engine import dispose_engines, get_engine
from workbench.store.schema import StoreSchemaError

__all__ = ["StoreSchemaError", "dispose_engines", "get_engine"]
